"""The log-scale GP of the trust-region optimiser, on gpCAM's GPOptimizer.

Values are modelled as z = log(max(y, floor)); the noise variance of z is var(y)/y^2 (delta
method; counting statistics give var(y)), floored by a minimum relative noise. Hyperparameters
of gpCAM's default kernel (anisotropic Matern 3/2: [signal variance, length scales...]) are
trained by local optimisation from seeded starts, so training is reproducible.
"""

from __future__ import annotations

import warnings

import numpy as np
from gpcam import GPOptimizer

from agent.acquisition import posterior_mean_std
from agent.training import restart_points


def log_values(y: np.ndarray, var: np.ndarray, floor_fraction: float, default_rel: float,
               min_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """(z, noise variance of z) for values ``y`` with variances ``var`` (nan: unknown)."""
    y = np.asarray(y, dtype=float)
    floor = floor_fraction * max(float(np.max(y)), 1e-300)
    yf = np.maximum(y, floor)
    rel2 = np.where(np.isnan(var), default_rel ** 2, np.asarray(var) / yf ** 2)
    return np.log(yf), np.clip(rel2, min_rel ** 2, 1.0)


class QuadraticMean:
    """Separable concave quadratic prior mean c + sum_i a_i u_i + b_i u_i^2 (b_i <= 0), fitted
    by ridge least squares (gpCAM prior_mean_function signature)."""

    def __init__(self, x: np.ndarray, z: np.ndarray, ridge: float = 1e-3):
        n, d = x.shape
        xc = x.mean(axis=0)
        self.xc = xc
        f = np.hstack([np.ones((n, 1)), x - xc, (x - xc) ** 2])
        reg = ridge * np.eye(1 + 2 * d) * n
        reg[0, 0] = 0.0
        w = np.linalg.solve(f.T @ f + reg, f.T @ z)
        convex = w[1 + d:] > 0  # never extrapolate upwards: refit without those terms
        if np.any(convex):
            keep = np.r_[np.ones(1 + d, bool), ~convex]
            w = np.zeros(1 + 2 * d)
            fk = f[:, keep]
            w[keep] = np.linalg.solve(fk.T @ fk + reg[np.ix_(keep, keep)], fk.T @ z)
        self.w = w

    def __call__(self, x, hyperparameters=None):
        d = len(self.xc)
        dx = np.asarray(x) - self.xc
        return self.w[0] + dx @ self.w[1:1 + d] + (dx ** 2) @ self.w[1 + d:]

    def grad(self, x, hyperparameters):
        return np.zeros((len(hyperparameters), len(x)))


class _QuadraticForm:
    """c + g.dx + dx.H.dx/2 about ``xc`` with ``w = [c, g]`` and ``h`` set by a subclass
    (gpCAM prior_mean_function signature; the mean has no hyperparameters)."""

    xc: np.ndarray
    w: np.ndarray
    h: np.ndarray

    def __call__(self, x, hyperparameters=None):
        dx = np.asarray(x) - self.xc
        d = len(self.xc)
        return self.w[0] + dx @ self.w[1:1 + d] + 0.5 * np.einsum("ni,ij,nj->n", dx, self.h, dx)

    def grad(self, x, hyperparameters):
        return np.zeros((len(hyperparameters), len(x)))


class FullQuadraticMean(_QuadraticForm):
    """Concave quadratic prior mean c + g.dx + dx.H.dx/2 with cross terms (ridges), fitted by
    ridge least squares; H is projected onto negative semi-definite matrices (eigenvalues
    clipped at 0) and c, g refitted, so the mean never extrapolates upwards."""

    def __init__(self, x: np.ndarray, z: np.ndarray, ridge: float = 1e-2):
        n, d = x.shape
        self.xc = x.mean(axis=0)
        dx = x - self.xc
        iu = np.triu_indices(d)
        quad = dx[:, iu[0]] * dx[:, iu[1]]
        f = np.hstack([np.ones((n, 1)), dx, quad])
        reg = np.zeros(f.shape[1])
        reg[1 + d:] = ridge * n * np.mean(quad ** 2)  # shrink curvatures, not slopes
        w = np.linalg.solve(f.T @ f + np.diag(reg) + 1e-12 * np.eye(f.shape[1]), f.T @ z)
        h = np.zeros((d, d))
        h[iu] = w[1 + d:]
        h = h + h.T  # dx.H.dx/2 with H_ii = 2 w_ii, H_ij = w_ij
        ev, vec = np.linalg.eigh(h)
        self.h = (vec * np.minimum(ev, 0.0)) @ vec.T
        r = z - 0.5 * np.einsum("ni,ij,nj->n", dx, self.h, dx)
        f1 = f[:, :1 + d]
        self.w = np.linalg.lstsq(f1, r, rcond=None)[0]


class FixedCurvatureMean(_QuadraticForm):
    """Concave quadratic prior mean c + g.dx + dx.H.dx/2 with the curvature H given (e.g.
    from an earlier run: the optics' shape does not drift, their position does) and only c,
    g fitted to the data, by ridge least squares (the slopes shrunk when there are fewer
    points than d + 1). The maximum of the mean is then a Newton step from the data."""

    def __init__(self, x: np.ndarray, z: np.ndarray, h: np.ndarray, ridge: float = 1e-3):
        n, d = x.shape
        self.xc, self.h = x.mean(axis=0), np.asarray(h, float)
        dx = x - self.xc
        r = z - 0.5 * np.einsum("ni,ij,nj->n", dx, self.h, dx)
        f = np.hstack([np.ones((n, 1)), dx])
        reg = ridge * max(n, 1) * np.eye(1 + d)
        reg[0, 0] = 0.0
        self.w = np.linalg.solve(f.T @ f + reg, f.T @ r)


def curvature(x: np.ndarray, z: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """The negative semi-definite curvature H (d, d) of log values ``z`` at points ``x``
    (unit cube), from a full quadratic fit (FullQuadraticMean)."""
    return FullQuadraticMean(x, z, ridge).h


def make_gp(x, z, noise, hps, prior_mean=None) -> GPOptimizer:
    kw = {}
    if prior_mean is not None:
        kw = {"prior_mean_function": prior_mean, "prior_mean_function_grad": prior_mean.grad}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GPOptimizer(x, z, init_hyperparameters=np.array(hps, dtype=float),
                           noise_variances=noise, **kw)


def hyperparameter_bounds(z: np.ndarray, d: int, ls: tuple[float, float]) -> np.ndarray:
    """(d+1, 2): signal variance var(z)*[1e-2, 1e2] (at least [1e-4, 1e2]), length scales."""
    v = max(float(np.var(z)), 1e-2)
    b = np.empty((d + 1, 2))
    b[0] = (v * 1e-2, v * 1e2)
    b[1:] = ls
    return b


def train(x, z, noise, hps0, bounds, restarts: int, max_iter: int, seed: int,
          prior_mean=None) -> np.ndarray:
    """Best (by log likelihood) of local trainings from ``hps0`` and seeded random starts."""
    best, out = -np.inf, np.clip(hps0, bounds[:, 0], bounds[:, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in restart_points(out, bounds, restarts, seed):
            gp = make_gp(x, z, noise, start, prior_mean)
            try:
                gp.train(hyperparameter_bounds=bounds, method="local", n_restarts=1,
                         max_iter=max_iter)
            except Exception:  # a failed start must not kill the decision
                continue
            ll = float(gp.log_likelihood())
            if np.isfinite(ll) and ll > best:
                best, out = ll, np.array(gp.hyperparameters, dtype=float)
    return out


def mean_std(gp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std (log scale) at unit-cube points (m, d)."""
    return posterior_mean_std(gp, x)


def sample(gp, x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k joint posterior samples (k, m) at ``x`` (m, d) (Thompson sampling)."""
    mu = np.asarray(gp.posterior_mean(x)["m(x)"]).reshape(-1)
    s = np.asarray(gp.posterior_covariance(x)["S"])
    s = 0.5 * (s + s.T) + 1e-10 * np.eye(len(x)) * max(float(np.mean(np.diag(s))), 1e-12)
    w, v = np.linalg.eigh(s)
    root = v * np.sqrt(np.clip(w, 0, None))
    return mu + rng.standard_normal((k, len(x))) @ root.T
