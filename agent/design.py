"""Space-filling point sets in the normalised unit cube [0, 1]^d (scipy.stats.qmc)."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

#: the top fraction of first-pass points whose share of the residuals measures localisation
TOP_FRACTION = 0.1
#: a point lies on a plateau when its plane residual is within this many noise std
PLATEAU_Z = 3.0


def initial_design(method: str, n: int, d: int, seed: int, interleaved: bool = False
                   ) -> np.ndarray:
    """The start-up design: (n, d) points in [0, 1]^d, Sobol (scrambled) or Latin hypercube.

    Sobol is drawn in a power-of-two block and truncated; truncation keeps it space filling
    well enough for a start-up design and avoids scipy's balance warning.
    """
    if method == "sobol":
        m = int(np.ceil(np.log2(max(n, 2))))
        return qmc.Sobol(d, scramble=True, seed=seed).random_base2(m)[:n]
    if method == "lhs":
        return qmc.LatinHypercube(d, seed=seed).random(n)
    if method == "raster":
        return raster(n, d, interleaved)
    raise ValueError(f"initial design method {method!r} unknown; use 'sobol', 'lhs' or 'raster'")


def raster(n: int, d: int, interleaved: bool = False) -> np.ndarray:
    """A coarse regular grid of :func:`raster_shape` (n, d) points, edges included, in
    boustrophedon (serpentine) order so that consecutive points are neighbours: the cheapest
    way to cover the space when moves cost time. Truncated to n points.

    ``interleaved``: the same grid in two passes, the even planes of the slowest axis first
    (rows, in 2-D), then the odd ones on the way back; each pass is a serpentine and every
    move but one per row change is to a neighbour. The first pass alone is a complete
    raster at twice the spacing along the slowest axis (:func:`first_pass_size` points).
    """
    axes = [np.linspace(0.0, 1.0, k) for k in raster_shape(n, d)]
    if not interleaved:
        return _snake(axes)[:n]
    first = _snake([axes[0][0::2]] + axes[1:])
    second = _snake([axes[0][1::2][::-1]] + axes[1:])
    mirrored = second.copy()
    mirrored[:, -1] = 1.0 - mirrored[:, -1]  # the same pass, fastest axis run the other way
    if np.abs(mirrored[0] - first[-1]).max() < np.abs(second[0] - first[-1]).max():
        second = mirrored
    return np.vstack([first, second])[:n]


def raster_shape(n: int, d: int) -> tuple[int, ...]:
    """Points per axis (slowest first) of the raster of n points: k+1 on the j fastest axes
    and k on the others when n = k^(d-j) (k+1)^j (:func:`raster_sizes`), else k = ceil(n^(1/d))
    on every axis (then truncated)."""
    k = max(int(np.floor(n ** (1.0 / d) + 1e-9)), 2)
    for j in range(d + 1):
        if k ** (d - j) * (k + 1) ** j == n:
            return (k,) * (d - j) + (k + 1,) * j
    return (max(int(np.ceil(n ** (1.0 / d) - 1e-9)), 2),) * d


def raster_sizes(k: int, d: int) -> list[int]:
    """Full raster sizes from k^d to (k+1)^d, one axis more at a time: the steps a raster
    sized to a budget may take (a square grid alone wastes up to a row of beamtime)."""
    return [k ** (d - j) * (k + 1) ** j for j in range(d + 1)]


def first_pass_size(n: int, d: int) -> int:
    """Points in the first pass of ``raster(n, d, interleaved=True)``."""
    shape = raster_shape(n, d)
    return min((shape[0] + 1) // 2 * int(np.prod(shape[1:])), n)


def residual_share(x: np.ndarray, y: np.ndarray) -> float:
    """How localised the unresolved part of a map is: the share of the summed plane
    residuals (:func:`agent.acquisition.plane_residuals`, leave-one-out) of the measured
    points ``x`` (n, d), ``y`` (n,) held by the TOP_FRACTION of points with the largest.
    ~0.2 to 0.3 where the error is spread over the map (noise on a flat map, ripples,
    textures), towards 1 where it sits on walls or isolated peaks."""
    from agent.acquisition import plane_residuals

    res = np.sort(plane_residuals(np.asarray(x, float), np.asarray(y, float)))[::-1]
    top = max(int(np.ceil(TOP_FRACTION * len(res))), 1)
    return float(np.sum(res[:top]) / (np.sum(res) + 1e-300))


def plateau_share(x: np.ndarray, y: np.ndarray, variance: np.ndarray) -> float:
    """The share of the measured points ``x`` (n, d), ``y`` (n,) that lie on a plateau: their
    leave-one-out plane residual (:func:`agent.acquisition.plane_residuals`) is within
    PLATEAU_Z noise standard deviations (``variance`` (n,), the measurements' own).
    Large where the map is flat or planar between walls or peaks (phase domains, a particle
    map's background) even when a coarse raster crosses so much wall that the residuals
    look spread (:func:`residual_share`); small on curved maps (smooth fields, textures)
    while the raster is too coarse to resolve their curvature to the noise."""
    from agent.acquisition import plane_residuals

    res = plane_residuals(np.asarray(x, float), np.asarray(y, float))
    return float(np.mean(res <= PLATEAU_Z * np.sqrt(np.asarray(variance, float))))


def _snake(axes: list[np.ndarray]) -> np.ndarray:
    """The grid of ``axes`` (slowest first) in serpentine order: (prod len, d)."""
    rows = [[]]
    for axis in axes:  # snake: reverse the new (fastest) axis on every other row
        rows = [r + [a] for i, r in enumerate(rows)
                for a in (axis if i % 2 == 0 else axis[::-1])]
    return np.array(rows)


def candidates(m: int, d: int, rng: np.random.Generator, centre: np.ndarray | None,
               local_fraction: float = 0.25, local_halfwidth: float = 0.1) -> np.ndarray:
    """(m, d) candidate points: scrambled Sobol over the cube plus a local cloud near ``centre``.

    The local cloud makes nearby (cheap to reach) points competitive when travel is costed.
    """
    n_local = int(m * local_fraction) if centre is not None else 0
    k = int(np.ceil(np.log2(max(m - n_local, 2))))
    glob = qmc.Sobol(d, scramble=True, seed=rng).random_base2(k)[: m - n_local]
    if n_local == 0:
        return glob
    local = centre + rng.uniform(-local_halfwidth, local_halfwidth, size=(n_local, d))
    return np.vstack([glob, np.clip(local, 0.0, 1.0)])


def check_grid(d: int, seed: int, n: int = 256) -> np.ndarray:
    """(n, d) fixed quasi-random points for the uncertainty stop condition."""
    m = int(np.ceil(np.log2(n)))
    return qmc.Sobol(d, scramble=True, seed=seed + 7919).random_base2(m)[:n]
