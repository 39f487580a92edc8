"""Baselines with the optimisers' ask/tell face: random search, sequential 1-D scans with a move
to the peak (what ``rel_scan`` + ``PeakStats`` does), and scipy's Nelder-Mead."""

from __future__ import annotations

import queue
import threading

import numpy as np
from scipy.optimize import minimize

from agent.optimise.base import AskTellOptimiser
from agent.optimise.config import NelderMeadConfig, RandomSearchConfig, SequentialScanConfig


class RandomSearch(AskTellOptimiser):
    """Uniform random points in +-fraction of each range around start (or the whole box)."""

    acquisition_name = "random"

    def __init__(self, config: RandomSearchConfig):
        super().__init__(config)
        f = config.fraction
        self._lo = np.zeros(self.d) if f is None else np.clip(self.start - f, 0, 1)
        self._hi = np.ones(self.d) if f is None else np.clip(self.start + f, 0, 1)

    def _propose(self, n, origin):
        if self.n_evaluations + len(self._pending) == 0:  # where the beamline is, first
            return np.vstack([self.start, self._draw(n - 1)]), np.zeros(n), "initial_design"
        return self._draw(n), np.zeros(n), "gp"

    def _draw(self, n: int) -> np.ndarray:
        return self._lo + (self._hi - self._lo) * self._rng.random((n, self.d))


class SequentialScan(AskTellOptimiser):
    """Coordinate-wise 1-D scans (points_per_scan over widths[p] around the current value),
    each followed by a move to the peak; one pass per width."""

    acquisition_name = "sequential_scan"

    def __init__(self, config: SequentialScanConfig):
        super().__init__(config)
        order = config.order or config.names
        unknown = sorted(set(order) - set(config.names))
        if unknown:
            raise ValueError(f"order names unknown coordinate(s) {unknown}")
        self._axes = [config.names.index(n) for n in order]
        self._here = self.start.copy()  # where the scans are centred
        self._scan_index = 0  # pass * len(axes) + axis
        self._scan: np.ndarray | None = None  # (k, d) points of the current scan
        self._told: dict[int, float] = {}
        self._next = 0  # next point of the scan to propose

    def _own_stop_reason(self):
        if self._scan_index >= len(self.config.widths) * len(self._axes):
            return f"all {len(self.config.widths)} passes done"
        return None

    def _observed(self, u, y, var):
        self._record(u, y)

    def _failed_at(self, u):
        self._record(u, 0.0)

    def _record(self, u, y):
        if self._scan is None:
            return
        i = int(np.argmin(np.max(np.abs(self._scan - u), axis=1)))
        self._told[i] = y
        if len(self._told) == len(self._scan):
            self._finish_scan()

    def _released(self, u):
        if self._scan is not None:  # re-propose from the first unmeasured point
            self._next = min([i for i in range(len(self._scan)) if i not in self._told],
                             default=self._next)

    def _finish_scan(self):
        axis = self._axes[self._scan_index % len(self._axes)]
        x = self._scan[:, axis]
        y = np.array([self._told[i] for i in range(len(x))])
        self._here[axis] = peak(x, y, self.config.peak, self._here[axis])
        self._scan, self._told, self._next = None, {}, 0
        self._scan_index += 1

    def _new_scan(self):
        axis = self._axes[self._scan_index % len(self._axes)]
        width = self.config.widths[self._scan_index // len(self._axes)]
        lo = float(np.clip(self._here[axis] - width / 2, 0.0, 1.0 - width))
        pts = np.repeat(self._here[None], self.config.points_per_scan, axis=0)
        pts[:, axis] = np.clip(np.linspace(lo, lo + width, self.config.points_per_scan), 0, 1)
        self._scan = pts

    def _propose(self, n, origin):
        if self._scan is None:
            self._new_scan()
        k = min(n, len(self._scan) - self._next)
        pts = self._scan[self._next:self._next + k]
        self._next += k
        return pts, np.zeros(k), "gp"


def peak(x: np.ndarray, y: np.ndarray, how: str, default: float) -> float:
    """PeakStats-like peak position of a 1-D scan: 'max', 'com' (of y - min) or 'cen' (the
    midpoint of the outermost half-maximum crossings); ``default`` for a flat scan."""
    base = y - np.min(y)
    if not np.any(base > 0):
        return default
    if how == "max":
        return float(x[int(np.argmax(y))])
    if how == "com":
        return float(np.sum(base * x) / np.sum(base))
    half = 0.5 * np.max(base)
    above = np.flatnonzero(base >= half)
    i, j = above[0], above[-1]
    left = x[i] if i == 0 else np.interp(half, [base[i - 1], base[i]], [x[i - 1], x[i]])
    right = x[j] if j == len(x) - 1 else np.interp(half, [base[j + 1], base[j]],
                                                   [x[j + 1], x[j]])
    return float(0.5 * (left + right))


class _Stopped(Exception):
    pass


class NelderMead(AskTellOptimiser):
    """scipy.optimize.minimize(method="Nelder-Mead") on -log(value) in the unit cube, run in
    a worker thread that hands each evaluation over ask/tell (one point per ask)."""

    acquisition_name = "nelder_mead"

    def __init__(self, config: NelderMeadConfig):
        super().__init__(config)
        self._points: queue.Queue = queue.Queue()
        self._answers: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._outstanding: np.ndarray | None = None
        self._awaiting = False  # proposed, not yet told
        self._finished: str | None = None

    def _simplex(self) -> np.ndarray:
        f = self.config.initial_simplex_fraction
        rows = [self.start]
        for i in range(self.d):
            p = self.start.copy()
            p[i] = p[i] + f if p[i] + f <= 1 else p[i] - f
            rows.append(p)
        return np.array(rows)

    def _run(self):
        c = self.config
        try:
            res = minimize(self._fun, self.start, method="Nelder-Mead",
                           bounds=[(0.0, 1.0)] * self.d,
                           options={"initial_simplex": self._simplex(), "adaptive": c.adaptive,
                                    "xatol": c.xatol, "fatol": c.fatol, "maxfev": 10 ** 7,
                                    "maxiter": 10 ** 7})
            self._finished = f"Nelder-Mead converged: {res.message}"
        except _Stopped:
            self._finished = "closed"
        self._points.put(None)

    def _fun(self, x: np.ndarray) -> float:
        self._points.put(np.array(x, dtype=float))
        y = self._answers.get()
        if y is None:
            raise _Stopped
        return y

    def _own_stop_reason(self):
        return self._finished if self._outstanding is None and self._finished else None

    def _propose(self, n, origin):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="nelder-mead")
            self._thread.start()
        if self._awaiting:
            return np.empty((0, self.d)), [], "gp"  # sequential: waits for its point
        if self._outstanding is None:
            self._outstanding = self._points.get()
            if self._outstanding is None:
                return np.empty((0, self.d)), [], "done"
        self._awaiting = True
        return self._outstanding[None], np.zeros(1), "gp"

    def _answer(self, y: float | None):
        if self._outstanding is None:
            return
        best = max(self._y) if self._y else 1.0
        floor = self.config.log_floor * max(best, 1e-300)
        self._outstanding, self._awaiting = None, False
        self._answers.put(-float(np.log(max(y if y is not None else floor, floor))))

    def _observed(self, u, y, var):
        self._answer(y)

    def _failed_at(self, u):
        self._answer(None)

    def _released(self, u):
        self._awaiting = False  # the same point is proposed again

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self._answers.put(None)
            self._thread.join(5.0)
