"""Acquisition functions evaluated on a candidate set in normalised coordinates.

The posterior is taken from gpCAM in chunks (gpCAM's ``posterior_covariance`` forms the full
m x m covariance, so one call over thousands of candidates costs seconds; chunks of 100 keep
it near m*N^2). Scores are "larger is better".

``mapping`` (our acquisition for map making): posterior std weighted by how much the signal
changes there, ``sd * (1 + gain * (|mu - median(y)| + ell*|grad mu|) / s)`` with s the spread of
the data and ell the mean length scale. Plain posterior std (gpCAM's ``variance``) depends only
on where points are, not on what was measured, so it fills space like a grid; weighting by
amplitude and gradient puts points on peaks and edges, where a stationary GP's error is
largest. The amplitude term plays the role of the log-GP's lognormal std (which FIELD_NOTES
found to beat a grid), without requiring a positive signal.

``variation`` (measured best for maps, benchmarks/bench_map_quality.py): ``gap * (local range /
data range + floor)``, with gap the distance to the nearest measured or pending point and the
local range the spread of the k nearest measured values (on the GP's scale). Model-free, it
samples across walls and peak flanks that a stationary GP smooths away, and the floor keeps
covering quiet regions. Use it with the ``multiscale`` kernel: with one length scale the map
reverts to the prior mean between the sparse points away from a densely sampled wall.

``log_std``: the lognormal std of the log-GP (``model="log_gp"``); with a plain GP the std.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agent.training import length_scales, prior_variance

CHUNK = 100
VARIATION_K = 4
RESIDUAL_K = 6
GRADIENT_TOP = 300


def posterior_mean_std(gp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (m,) and std (m,) of gpCAM's GP at normalised points ``x`` (m, d)."""
    mu = np.asarray(gp.posterior_mean(x)["m(x)"]).reshape(-1)
    var = np.concatenate([
        np.asarray(gp.posterior_covariance(x[i:i + CHUNK], variance_only=True)["v(x)"]).reshape(-1)
        for i in range(0, len(x), CHUNK)])
    return mu, np.sqrt(np.clip(var, 0.0, None))


def is_log(gp) -> bool:
    """True for gpCAM's LogGPOptimizer (the GP models log of the value)."""
    from gpcam import LogGPOptimizer

    return isinstance(gp, LogGPOptimizer)


def value_moments(gp, mu: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GP-space mean and std -> map value and std of the value. Identity for a plain GP. For
    the log-GP: the lognormal median ``exp(mu)`` (the lognormal mean ``exp(mu + s^2/2)`` is
    inflated by the prior variance far from data, measured to wreck the map) and the lognormal
    std ``sqrt((exp(s^2) - 1) exp(2 mu + s^2))``."""
    if not is_log(gp):
        return mu, sd
    return np.exp(mu), value_moments_std(True, mu, sd)


def local_variation(x: np.ndarray, x_data: np.ndarray, y: np.ndarray,
                    k: int = VARIATION_K) -> np.ndarray:
    """Range (m,) of the measured values ``y`` at the k measured points ``x_data`` nearest to
    each candidate ``x`` (m, d): large across a wall or on a peak's flank, ~noise where the
    map is flat. Model-free, so it sees a step the GP has smoothed away."""
    from scipy.spatial import cKDTree

    k = min(k, len(x_data))
    _, idx = cKDTree(x_data).query(x, k=k)
    vals = np.asarray(y)[np.asarray(idx).reshape(len(x), k)]
    return np.ptp(vals, axis=1)


def local_residual(x: np.ndarray, x_data: np.ndarray, y: np.ndarray,
                   k: int = VARIATION_K) -> np.ndarray:
    """Largest plane residual (m,) (:func:`plane_residuals`) among the k measured points
    nearest to each candidate ``x`` (m, d): where the map is not yet resolved."""
    from scipy.spatial import cKDTree

    res = plane_residuals(x_data, y)
    k = min(k, len(x_data))
    _, idx = cKDTree(x_data).query(x, k=k)
    return np.max(res[np.asarray(idx).reshape(len(x), k)], axis=1)


def plane_residuals(x_data: np.ndarray, y: np.ndarray, k: int = RESIDUAL_K) -> np.ndarray:
    """Leave-one-out residuals (n,): |y_i - the least-squares plane through the k measured
    points nearest to x_i (x_i itself left out)|. An a-posteriori error indicator as in
    adaptive mesh refinement: ~ curvature * spacing^2 where the map is resolved (a sampled
    slope or a well-sampled peak flank gives ~noise), ~ the feature's height where a feature
    stands on a single point. Model-free and O(n k)."""
    from scipy.spatial import cKDTree

    n, d = x_data.shape
    y = np.asarray(y, dtype=float)
    if n < d + 3:
        return np.zeros(n)
    k = min(k, n - 1)
    _, idx = cKDTree(x_data).query(x_data, k=k + 1)
    idx = np.asarray(idx)[:, 1:]  # leave the point itself out
    dx = x_data[idx] - x_data[:, None, :]  # (n, k, d), centred on the left-out point
    a = np.concatenate([np.ones((n, k, 1)), dx], axis=2)  # plane: y = c + g . dx
    ata = np.einsum("nki,nkj->nij", a, a)
    scale = np.einsum("nkj,nkj->nj", dx, dx).mean(axis=1)  # ridge on the slopes, relative
    ata[:, 1:, 1:] += 1e-6 * (scale[:, None, None] + 1e-12) * np.eye(d)
    coef = np.linalg.solve(ata, np.einsum("nki,nk->ni", a, y[idx])[..., None])[..., 0]
    return np.abs(y - coef[:, 0])  # the plane at dx = 0 is its intercept


def gradient_norm(gp, x: np.ndarray, mu: np.ndarray, step: float) -> np.ndarray:
    """|grad mu| (m,) in normalised coordinates: forward differences of gpCAM's posterior mean
    (``mu`` is the mean at ``x``)."""
    m, d = x.shape
    stencil = (x[:, None, :] + np.eye(d)[None] * step).reshape(-1, d)
    shifted = np.asarray(gp.posterior_mean(stencil)["m(x)"]).reshape(m, d)
    return np.sqrt(np.sum(((shifted - mu[:, None]) / step) ** 2, axis=1))


class Scorer:
    """Scores candidates for one acquisition; ``score(sd)`` re-scores with a reduced std.

    The std can be reduced (batch selection, pending points) without new GP calls, because
    every supported acquisition is a function of (mu, sd, fixed per-candidate terms). ``mu``
    and ``sd`` are in GP space (log of the value for the log-GP).
    """

    def __init__(self, acquisition: str | Callable, gp, x: np.ndarray, y: np.ndarray,
                 beta: float, variation_floor: float = 0.5, variation_measure: str = "range",
                 mapping_gain: float = 2.0):
        self.name = acquisition if isinstance(acquisition, str) else "callable"
        self.x = x
        self.log = is_log(gp)
        self.mu, self.sd = posterior_mean_std(gp, x)
        self._fixed = None
        self._gain = mapping_gain
        if callable(acquisition):
            # a user callable f(x, gp) in gpCAM's convention: no std decomposition, scored once
            self._fixed = np.asarray(acquisition(x, gp), dtype=float).reshape(-1)
        elif acquisition == "mapping":
            self._weight = self._mapping_weight(gp, x, y)
        elif acquisition == "variation":
            # on the GP's scale: log values for the log-GP (a small peak on a weak background
            # is a large relative change)
            z = np.asarray(gp.y_data).reshape(-1)
            xd = np.asarray(gp.x_data)
            if variation_measure == "residual":
                self._local = local_residual(x, xd, z) / (np.ptp(z) + 1e-300)
            else:
                self._local = local_variation(x, xd, z) / (np.ptp(z) + 1e-300)
        self._beta = beta
        self._floor = variation_floor
        self._best = (float(np.max(y)), float(np.min(y)))
        self._acq = acquisition

    def _mapping_weight(self, gp, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ls = length_scales(gp.hyperparameters, getattr(gp, "beamagent_kernel", "matern32"))
        ell = float(np.exp(np.mean(np.log(ls))))
        spread = float(np.ptp(y)) + 1e-12
        step = float(np.clip(0.5 * np.min(ls), 1e-3, 0.05))
        mean, sd = value_moments(gp, self.mu, self.sd)
        amp = np.abs(mean - np.median(y)) / spread
        # the gradient costs d mean evaluations per point: only where it can matter
        top = np.argsort(sd * (1.0 + self._gain * amp))[-GRADIENT_TOP:]
        grad = ell * gradient_norm(gp, x[top], self.mu[top], step) / spread
        if self.log:  # d exp(mu) = exp(mu) d mu
            grad = grad * np.exp(self.mu[top])
        weight = 1.0 + self._gain * amp
        weight[top] += self._gain * grad
        return weight

    def score(self, sd: np.ndarray | None = None, gap: np.ndarray | None = None
              ) -> np.ndarray:
        """Acquisition values (m,), larger is better, with GP-space std ``sd`` (default:
        posterior). Means and stds are on the value scale for mapping/log_std/variance.
        ``gap`` (m,): distance to the nearest measured or pending point ("variation")."""
        if self._fixed is not None:
            return self._fixed
        sd = self.sd if sd is None else sd
        mu, a = self.mu, self._acq
        if a == "variation":
            return gap * (self._local + self._floor)
        if a in ("mapping", "log_std", "variance"):
            # value-scale std: lognormal std for the log-GP (log_std), the std for a plain GP
            vsd = value_moments_std(self.log, mu, sd)
            return vsd * self._weight if a == "mapping" else vsd
        if a == "ucb":
            return mu + self._beta * sd
        if a == "lcb":
            return -(mu - self._beta * sd)
        if a == "maximum":
            return mu
        if a == "minimum":
            return -mu
        if a in ("expected improvement", "probability of improvement"):
            return _improvement(a, mu, sd, float(np.log(self._best[0])) if self.log
                                else self._best[0])
        raise ValueError(f"acquisition {a!r} unknown")


def value_moments_std(log: bool, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Value-scale std from GP-space mean and std (lognormal std when ``log``)."""
    if not log:
        return sd
    v = sd ** 2
    return np.sqrt(np.expm1(v) * np.exp(2 * mu + v))


def _improvement(name: str, mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement / probability of improvement over ``best`` (maximisation)."""
    from scipy.stats import norm

    z = (mu - best) / (sd + 1e-12)
    if name == "probability of improvement":
        return norm.cdf(z)
    return (mu - best) * norm.cdf(z) + sd * norm.pdf(z)


def correlation(gp, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Prior kernel correlation (m, k) between candidates ``x`` and points ``p`` (gpCAM kernel)."""
    hps = np.asarray(gp.hyperparameters)
    k0 = prior_variance(hps, getattr(gp, "beamagent_kernel", "matern32"))
    return np.asarray(gp.prior.compute_covariances(x, p, hps)) / k0
