"""Acquisition functions evaluated on a candidate set in normalised coordinates.

The posterior is taken from gpCAM in chunks (gpCAM's ``posterior_covariance`` forms the full
m x m covariance, so one call over thousands of candidates costs seconds; chunks of 100 keep
it near m*N^2). Scores are "larger is better".

``mapping`` (our acquisition for map making): posterior std weighted by how much the signal
changes there, ``sd * (FLOOR + |mu - median(y)|/s + ell*|grad mu|/s)`` with s the spread of
the data and ell the mean length scale. Plain posterior std (gpCAM's ``variance``) depends only
on where points are, not on what was measured, so it fills space like a grid; weighting by
amplitude and gradient puts points on peaks and edges, where a stationary GP's error is
largest. The amplitude term plays the role of the log-GP's lognormal std (which FIELD_NOTES
found to beat a grid), without requiring a positive signal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: weight of signal change relative to plain std; 1 + GAIN*(change / range of the data)
GAIN = float(__import__("os").environ.get("BEAMAGENT_MAPPING_GAIN", "2.0"))
CHUNK = 100
GRADIENT_TOP = 300


def posterior_mean_std(gp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (m,) and std (m,) of gpCAM's GP at normalised points ``x`` (m, d)."""
    mu = np.asarray(gp.posterior_mean(x)["m(x)"]).reshape(-1)
    var = np.concatenate([
        np.asarray(gp.posterior_covariance(x[i:i + CHUNK], variance_only=True)["v(x)"]).reshape(-1)
        for i in range(0, len(x), CHUNK)])
    return mu, np.sqrt(np.clip(var, 0.0, None))


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
    every supported acquisition is a function of (mu, sd, fixed per-candidate terms).
    """

    def __init__(self, acquisition: str | Callable, gp, x: np.ndarray, y: np.ndarray,
                 beta: float):
        self.name = acquisition if isinstance(acquisition, str) else "callable"
        self.x = x
        self.mu, self.sd = posterior_mean_std(gp, x)
        self._fixed = None
        if callable(acquisition):
            # a user callable f(x, gp) in gpCAM's convention: no std decomposition, scored once
            self._fixed = np.asarray(acquisition(x, gp), dtype=float).reshape(-1)
        elif acquisition == "mapping":
            hps = np.asarray(gp.hyperparameters)
            ell = float(np.exp(np.mean(np.log(hps[1:]))))
            spread = float(np.ptp(y)) + 1e-12
            step = float(np.clip(0.5 * np.min(hps[1:]), 1e-3, 0.05))
            amp = np.abs(self.mu - np.median(y)) / spread
            # the gradient costs d mean evaluations per point: only where it can matter
            top = np.argsort(self.sd * (1.0 + GAIN * amp))[-GRADIENT_TOP:]
            grad = np.zeros(len(x))
            grad[top] = ell * gradient_norm(gp, x[top], self.mu[top], step) / spread
            self._weight = 1.0 + GAIN * (amp + grad)
        self._beta = beta
        self._best = (float(np.max(y)), float(np.min(y)))
        self._acq = acquisition

    def score(self, sd: np.ndarray | None = None) -> np.ndarray:
        """Acquisition values (m,), larger is better, with std ``sd`` (default: posterior)."""
        if self._fixed is not None:
            return self._fixed
        sd = self.sd if sd is None else sd
        mu, a = self.mu, self._acq
        if a == "mapping":
            return sd * self._weight
        if a == "variance":  # gpCAM's 'variance' is the posterior std
            return sd
        if a == "ucb":
            return mu + self._beta * sd
        if a == "lcb":
            return -(mu - self._beta * sd)
        if a == "maximum":
            return mu
        if a == "minimum":
            return -mu
        if a in ("expected improvement", "probability of improvement"):
            return _improvement(a, mu, sd, self._best[0])
        raise ValueError(f"acquisition {a!r} unknown")


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
    return np.asarray(gp.prior.compute_covariances(x, p, hps)) / hps[0]
