"""Hyperparameter training off the decision path.

A background thread trains a *snapshot* GP (gpCAM ``GPOptimizer.train``), then builds a fresh
GP with the new hyperparameters on the snapshot data, so the O(N^3) factorisation also happens
off the decision path. The engine installs it under its lock after appending any data that
arrived meanwhile, a cheap rank-k update.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from fvgp.gp_mcmc import resolve_log_scale
from gpcam import GPOptimizer, LogGPOptimizer

#: GP classes by EngineConfig.model; the log-GP models log(y) (gpCAM transforms y and, by the
#: delta method, the noise variances var/y^2)
MODELS = {"gp": GPOptimizer, "log_gp": LogGPOptimizer}


def schedule_next(n: int, schedule: str, first_at: int, every: int) -> int:
    """The smallest training point count > n on the schedule (doubling or every k)."""
    if n < first_at:
        return first_at
    if schedule == "doubling":
        t = first_at
        while t <= n:
            t *= 2
        return t
    return first_at + ((n - first_at) // every + 1) * every


def hyperparameter_bounds(y: np.ndarray, d: int, length_scale_bounds: tuple[float, float],
                          kernel: str = "matern32") -> np.ndarray:
    """Bounds for the anisotropic Matern 3/2 kernel in normalised coordinates: (d+1, 2).

    Signal variance spans var(y)*[1e-2, 1e2] (data-driven, as gpCAM's default does with
    [1e-2, 10]); length scales are in units of the [0, 1] range.
    """
    v = max(float(np.var(y)), 1e-12)
    if kernel == "multiscale":  # long range above, short range below the geometric middle
        lo, hi = length_scale_bounds
        mid = float(np.sqrt(lo * hi)) if hi > 0.1 else hi / 2
        mid = min(max(mid, lo), 0.1)
        return np.array([(v * 1e-3, v * 1e2), (mid, hi), (v * 1e-3, v * 1e2), (lo, mid)])
    b = np.empty((d + 1, 2))
    b[0] = (v * 1e-2, v * 1e2)
    b[1:] = length_scale_bounds
    return b


class ConstantMean:
    """gpCAM prior mean function ``m(x, hyperparameters) = c`` (GP space), fixed per GP."""

    def __init__(self, c: float):
        self.c = float(c)

    def __call__(self, x, hyperparameters):
        return np.full(len(x), self.c)

    def grad(self, x, hyperparameters):
        return np.zeros((len(hyperparameters), len(x)))


def area_median(x: np.ndarray, z: np.ndarray, k: int = 4) -> float:
    """Median of ``z`` (n,) weighted by the area each point of ``x`` (n, d) stands for.

    The area is estimated as (distance to the k-th nearest neighbour)^d, so points an adaptive
    design crowds onto features count less: the result estimates the median over the *space*
    (the background level of a map with localized features), not over the measurements.
    """
    from scipy.spatial import cKDTree

    n, d = x.shape
    if n <= k:
        return float(np.median(z))
    dist, _ = cKDTree(x).query(x, k=k + 1)
    w = np.maximum(dist[:, -1], 1e-9) ** d
    order = np.argsort(z)
    cw = np.cumsum(w[order])
    return float(z[order][np.searchsorted(cw, 0.5 * cw[-1])])


def length_scale_floor(x: np.ndarray, fraction: float) -> float:
    """``fraction`` of the median distance from each point of ``x`` (n, d; normalised units)
    to its nearest neighbour; 0 for fewer than 2 points.

    Training bounds the length scales below by it. Correlation at shorter range than the
    points' spacing is not identifiable from the data, and the marginal likelihood can still
    prefer it. On 10 x 10 rasters of radial sines of 5 to 8 mm wavelength (20 mm square,
    the ripple family of benchmarks/bench_map_kinds.py, seeds 0 to 2) the fit put one length
    scale at the 0.005 bound, the map fell back to the mean between rows, and its RMSE was
    0.21 to 0.23 against bilinear interpolation's 0.10 to 0.11; with a floor of half the
    median spacing it was 0.13, 0.08 and 0.05."""
    from scipy.spatial import cKDTree

    if len(x) < 2:
        return 0.0
    dist, _ = cKDTree(x).query(x, k=2)
    return fraction * float(np.median(dist[:, 1]))


def _scaled_distance(x1: np.ndarray, x2: np.ndarray, hps: np.ndarray) -> np.ndarray:
    d2 = np.zeros((len(x1), len(x2)))
    for i in range(x1.shape[1]):
        d2 += (np.subtract.outer(x1[:, i], x2[:, i]) / hps[1 + i]) ** 2
    return np.sqrt(d2)


def matern12(x1: np.ndarray, x2: np.ndarray, hps: np.ndarray) -> np.ndarray:
    """Anisotropic Matern 1/2 (exponential) kernel, hps = [variance, length scales...]: rough
    sample paths, no overshoot at steps (fvgp.kernels.exponential_kernel)."""
    return hps[0] * np.exp(-_scaled_distance(x1, x2, hps))


def matern52(x1: np.ndarray, x2: np.ndarray, hps: np.ndarray) -> np.ndarray:
    """Anisotropic Matern 5/2 kernel, hps = [variance, length scales...] (fvgp.kernels)."""
    r = np.sqrt(5.0) * _scaled_distance(x1, x2, hps)
    return hps[0] * (1.0 + r + r * r / 3.0) * np.exp(-r)


def _matern32_iso(x1: np.ndarray, x2: np.ndarray, length: float) -> np.ndarray:
    r = np.sqrt(3.0) * _scaled_distance(x1, x2, np.r_[1.0, np.full(x1.shape[1], length)])
    return (1.0 + r) * np.exp(-r)


def multiscale(x1: np.ndarray, x2: np.ndarray, hps: np.ndarray) -> np.ndarray:
    """Sum of a long- and a short-range isotropic Matern 3/2, hps = [variance_long,
    length_long, variance_short, length_short]: smooth interpolation between sparse points in
    quiet regions plus sharp features (walls, small peaks) where points are dense. A single
    stationary length scale must pick one of the two (measured: map reverting to the prior mean
    between points away from a densely sampled wall)."""
    return hps[0] * _matern32_iso(x1, x2, hps[1]) + hps[2] * _matern32_iso(x1, x2, hps[3])


#: kernels by EngineConfig.kernel; None is gpCAM's default anisotropic Matern 3/2
KERNELS = {"matern32": None, "matern12": matern12, "matern52": matern52,
           "multiscale": multiscale}


def initial_hyperparameters(kernel: str, variance: float, d: int, length: float
                            ) -> np.ndarray:
    """Starting hyperparameters for ``kernel`` before any training."""
    if kernel == "multiscale":
        return np.array([variance / 2, 2 * length, variance / 2, length / 4])
    return np.array([variance] + [length] * d)


def length_scales(hps: np.ndarray, kernel: str) -> np.ndarray:
    """The length scales among ``hps`` (normalised units)."""
    hps = np.asarray(hps)
    return hps[[1, 3]] if kernel == "multiscale" else hps[1:]


def prior_variance(hps: np.ndarray, kernel: str) -> float:
    """k(x, x) of ``kernel`` with ``hps``."""
    hps = np.asarray(hps)
    return float(hps[0] + hps[2]) if kernel == "multiscale" else float(hps[0])


def make_gp(x: np.ndarray, y: np.ndarray, noise: np.ndarray, hps: np.ndarray,
            model: str = "gp", prior_mean: float | None = None,
            kernel: str = "matern32") -> GPOptimizer:
    """A gpCAM GP (``model`` "gp" or "log_gp") with measured noise variances (value units^2)
    and given hyperparameters. For "log_gp" ``y`` must be > 0. ``prior_mean`` (GP space)
    replaces gpCAM's default prior mean, the mean of the data. ``kernel`` names KERNELS."""
    kw = {}
    if KERNELS[kernel] is not None:
        kw["kernel_function"] = KERNELS[kernel]
    if prior_mean is not None:
        m = ConstantMean(prior_mean)
        kw.update(prior_mean_function=m, prior_mean_function_grad=m.grad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = MODELS[model](x, y, init_hyperparameters=np.array(hps, dtype=float),
                           noise_variances=noise, **kw)
    gp.beamagent_kernel = kernel  # read by agent.acquisition for length scales / variance
    return gp


def restart_points(hps0: np.ndarray, bounds: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``hps0`` and n - 1 seeded random starts for local hyperparameter training.

    Drawn log-uniformly where a bound spans a decade of positive values, uniformly elsewhere
    (fvgp's rule for its own restarts, ``resolve_log_scale``). fvgp draws them from numpy's
    global random state, which made training, and so the proposals, depend on whatever else
    used it; these are reproducible from ``seed``.
    """
    rng = np.random.default_rng(seed)
    lo, hi = bounds[:, 0], bounds[:, 1]
    log = resolve_log_scale("auto", bounds)
    log = np.zeros(len(lo), dtype=bool) if log is None else log
    starts = [hps0]
    for _ in range(n - 1):
        u = rng.uniform(lo, hi)
        u[log] = np.exp(rng.uniform(np.log(lo[log]), np.log(hi[log])))
        starts.append(u)
    return starts


class KernelStart(NamedTuple):
    """One kernel to train: its name (KERNELS), starting hyperparameters and their bounds."""

    kernel: str
    hps0: np.ndarray
    bounds: np.ndarray


#: the kernels EngineConfig.kernel == "auto" chooses between (matern12 for maps of plateaus
#: and walls, whose edges it keeps sharpest: benchmarks/bench_map_kinds.py, tuning families)
AUTO_KERNELS = ("multiscale", "matern52", "matern12")


class BackgroundTrainer:
    """Runs one training job at a time in a daemon thread; ``install`` receives the result."""

    def __init__(self, install: Callable[[GPOptimizer, np.ndarray, int, float], None]):
        self._install = install
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.n_trainings = 0
        self.last_error: str | None = None
        self.last_duration_s: float | None = None
        self.last_n: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, x, y, noise, kernels: list[KernelStart], n_restarts: int, max_iter: int,
              background: bool = True, model: str = "gp",
              prior_mean: float | None = None, seed: int = 0) -> None:
        """Train each of ``kernels`` on copies of the data and install the one with the
        largest log marginal likelihood; blocks only when ``background`` is False. The same
        data and ``seed`` give the same hyperparameters."""
        if self.running or self._stop.is_set():
            return
        kernels = [KernelStart(k.kernel, np.array(k.hps0), np.array(k.bounds)) for k in kernels]
        args = (x.copy(), y.copy(), noise.copy(), kernels, n_restarts, max_iter, model,
                prior_mean, seed)
        if not background:
            self._run(*args)
            return
        self._thread = threading.Thread(target=self._run, args=args, daemon=True,
                                        name="engine-training")
        self._thread.start()

    def _run(self, x, y, noise, kernels, n_restarts, max_iter, model, prior_mean,
             seed) -> None:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                best, hps, kernel = -np.inf, None, kernels[0].kernel
                for k in kernels:
                    hps0 = np.clip(k.hps0, k.bounds[:, 0], k.bounds[:, 1])
                    for start in restart_points(hps0, k.bounds, n_restarts, seed):
                        gp = make_gp(x, y, noise, start, model, prior_mean, k.kernel)
                        gp.train(hyperparameter_bounds=k.bounds, method="local",
                                 n_restarts=1, max_iter=max_iter)
                        ll = float(gp.log_likelihood())
                        if ll > best or hps is None:
                            best, kernel = ll, k.kernel
                            hps = np.array(gp.hyperparameters, dtype=float)
                fresh = make_gp(x, y, noise, hps, model, prior_mean, kernel)
            if not self._stop.is_set():
                self._install(fresh, hps, len(x), time.perf_counter() - t0)
            self.last_error = None
        except Exception as exc:  # training failure must never kill the engine
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.n_trainings += 1
            self.last_duration_s = time.perf_counter() - t0
            self.last_n = len(x)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop installing results and wait (bounded) for a running job; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
