"""Travel time and batch ordering.

Coordinates move in parallel (one motor each), so a move takes max_i |dx_i| / v_i; a point
costs that plus the per-point overhead (exposure, settling). Coordinates without a velocity
move for free.
"""

from __future__ import annotations

import numpy as np


def travel_time_s(origin: np.ndarray, x: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Move time (s) from ``origin`` (d,) to each row of ``x`` (m, d), engineering units.

    ``velocity`` (d,) in units/s, ``inf`` for free coordinates. Returns shape (m,).
    """
    dt = np.abs(np.atleast_2d(x) - origin) / velocity
    return dt.max(axis=1)


def order_path(points: np.ndarray, start: np.ndarray | None, velocity: np.ndarray) -> list[int]:
    """Visit order for ``points`` (n, d) from ``start`` that reduces total travel time.

    Nearest-neighbour tour followed by 2-opt improvement of the open path; exact enough for
    the small batches the engine returns. Returns a permutation of range(n).
    """
    n = len(points)
    if n <= 1:
        return list(range(n))
    origin = points[0] if start is None else start
    left = list(range(n))
    order: list[int] = []
    here = origin
    while left:
        t = travel_time_s(here, points[left], velocity)
        i = left.pop(int(np.argmin(t)))
        order.append(i)
        here = points[i]
    return _two_opt(order, points, origin, velocity)


def path_time_s(order: list[int], points: np.ndarray, origin: np.ndarray,
                velocity: np.ndarray) -> float:
    """Total move time (s) along ``order`` starting at ``origin``."""
    path = np.vstack([origin, points[order]])
    return float(np.sum(np.max(np.abs(np.diff(path, axis=0)) / velocity, axis=1)))


def _two_opt(order: list[int], points: np.ndarray, origin: np.ndarray,
             velocity: np.ndarray) -> list[int]:
    best = path_time_s(order, points, origin, velocity)
    improved = True
    while improved:
        improved = False
        for i in range(len(order) - 1):
            for j in range(i + 1, len(order)):
                cand = order[:i] + order[i:j + 1][::-1] + order[j + 1:]
                t = path_time_s(cand, points, origin, velocity)
                if t < best - 1e-12:
                    order, best, improved = cand, t, True
    return order
