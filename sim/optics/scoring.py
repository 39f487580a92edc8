"""The truth for benchmarks and tests (never served by an IOC): the optimum and the starts.

- :func:`find_optimum`: the noise-free optimum J* inside ``bounds``, by many local searches:
  4096 scrambled-Sobol points (seed 0) in the scaled box [0, 1]^d, the 16 best as starts of
  L-BFGS-B on -log J with batched central-difference gradients; the best end point wins.
  Results are cached per (params, bounds) for the process.
- :func:`misaligned_start`: a random start around the optimum with some beam on the camera
  (the APS rule).
- :func:`line_scan_pass`: one pass of coordinate-wise 1-D scans, the beamline status quo.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc

from sim.optics.model import OpticsModel

Bounds = Mapping[str, tuple[float, float]]
_CACHE: dict[tuple, tuple[dict[str, float], float]] = {}


def _box(model: OpticsModel, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([bounds[k][0] for k in model.dofs], float)
    hi = np.array([bounds[k][1] for k in model.dofs], float)
    return lo, hi


def find_optimum(model: OpticsModel, bounds: Bounds, n_sobol: int = 4096,
                 n_starts: int = 16) -> tuple[dict[str, float], float]:
    """``(positions, J*)``: the best noise-free objective inside ``bounds`` (module doc)."""
    key = (model.params.model_dump_json(), tuple((k, tuple(bounds[k])) for k in model.dofs),
           n_sobol, n_starts)
    if key not in _CACHE:
        _CACHE[key] = _search(model, bounds, n_sobol, n_starts)
    positions, j_star = _CACHE[key]
    return dict(positions), j_star


def _search(model: OpticsModel, bounds: Bounds, n_sobol: int,
            n_starts: int) -> tuple[dict[str, float], float]:
    lo, hi = _box(model, bounds)
    d = len(lo)

    def neg_log(u: np.ndarray) -> np.ndarray:
        return -np.log(model.objective_array(lo + np.clip(u, 0, 1) * (hi - lo)) + 1e-300)

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        h = 1e-6
        pts = np.vstack([u, u + h * np.eye(d), u - h * np.eye(d)])
        f = neg_log(pts)
        return float(f[0]), (f[1:d + 1] - f[d + 1:]) / (2 * h)

    u = qmc.Sobol(d, scramble=True, seed=0).random(n_sobol)
    starts = u[np.argsort(neg_log(u))[:n_starts]]
    best = min((minimize(fun, s, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * d)
                for s in starts), key=lambda r: r.fun)
    x = lo + np.clip(best.x, 0, 1) * (hi - lo)
    return dict(zip(model.dofs, map(float, x), strict=True)), float(np.exp(-best.fun))


def misaligned_start(model: OpticsModel, bounds: Bounds, optimum: Mapping[str, float],
                     fraction: float, rng: np.random.Generator, min_on_sensor: float = 0.1,
                     max_tries: int = 10_000) -> dict[str, float]:
    """Per DOF uniform in +-``fraction`` x range around ``optimum``, clipped to ``bounds``,
    re-drawn until at least ``min_on_sensor`` of the flux lands on the camera.

    Raises:
        RuntimeError: no draw in ``max_tries`` put the beam on the camera.
    """
    lo, hi = _box(model, bounds)
    centre = model.vector(optimum)
    for _ in range(max_tries):
        x = np.clip(centre + rng.uniform(-fraction, fraction, len(lo)) * (hi - lo), lo, hi)
        if model.moments(x[None, :])["fraction"][0] >= min_on_sensor:
            return dict(zip(model.dofs, map(float, x), strict=True))
    raise RuntimeError(f"no start within +-{fraction} of the ranges put >= {min_on_sensor} "
                       f"of the beam on the camera in {max_tries} draws")


def line_scan_pass(model: OpticsModel, bounds: Bounds, start: Mapping[str, float],
                   n_points: int = 21, span: float = 1.0) -> tuple[dict[str, float], int]:
    """One pass of 1-D scans in :attr:`OpticsModel.dofs` order: ``n_points`` over ``span`` x
    the range centred on the current point (clipped to bounds), then a move to the best.
    Returns the end point and the number of evaluations."""
    lo, hi = _box(model, bounds)
    x, evals = model.vector(start), 0
    for i in range(len(x)):
        grid = np.clip(x[i] + np.linspace(-span / 2, span / 2, n_points) * (hi[i] - lo[i]),
                       lo[i], hi[i])
        pts = np.tile(x, (n_points, 1))
        pts[:, i] = grid
        x = pts[int(np.argmax(model.objective_array(pts)))]
        evals += n_points
    return dict(zip(model.dofs, map(float, x), strict=True)), evals
