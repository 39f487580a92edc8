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

import numpy as np
from gpcam import GPOptimizer


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


def hyperparameter_bounds(y: np.ndarray, d: int, length_scale_bounds: tuple[float, float]
                          ) -> np.ndarray:
    """Bounds for the anisotropic Matern 3/2 kernel in normalised coordinates: (d+1, 2).

    Signal variance spans var(y)*[1e-2, 1e2] (data-driven, as gpCAM's default does with
    [1e-2, 10]); length scales are in units of the [0, 1] range.
    """
    v = max(float(np.var(y)), 1e-12)
    b = np.empty((d + 1, 2))
    b[0] = (v * 1e-2, v * 1e2)
    b[1:] = length_scale_bounds
    return b


def make_gp(x: np.ndarray, y: np.ndarray, noise: np.ndarray, hps: np.ndarray) -> GPOptimizer:
    """A gpCAM GP with measured noise variances and given hyperparameters (default kernel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GPOptimizer(x, y, init_hyperparameters=np.array(hps, dtype=float),
                           noise_variances=noise)


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

    def start(self, x, y, noise, hps0, bounds, n_restarts: int, max_iter: int,
              background: bool = True) -> None:
        """Train on copies of the data; blocks only when ``background`` is False."""
        if self.running or self._stop.is_set():
            return
        args = (x.copy(), y.copy(), noise.copy(), np.array(hps0), bounds, n_restarts, max_iter)
        if not background:
            self._run(*args)
            return
        self._thread = threading.Thread(target=self._run, args=args, daemon=True,
                                        name="engine-training")
        self._thread.start()

    def _run(self, x, y, noise, hps0, bounds, n_restarts, max_iter) -> None:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gp = make_gp(x, y, noise, np.clip(hps0, bounds[:, 0], bounds[:, 1]))
                gp.train(hyperparameter_bounds=bounds, method="local", n_restarts=n_restarts,
                         max_iter=max_iter)
                hps = np.array(gp.hyperparameters, dtype=float)
                fresh = make_gp(x, y, noise, hps)
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
