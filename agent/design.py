"""Space-filling point sets in the normalised unit cube [0, 1]^d (scipy.stats.qmc)."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc


def initial_design(method: str, n: int, d: int, seed: int) -> np.ndarray:
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
        return raster(n, d)
    raise ValueError(f"initial design method {method!r} unknown; use 'sobol', 'lhs' or 'raster'")


def raster(n: int, d: int) -> np.ndarray:
    """A coarse regular grid of k^d >= n points (k = ceil(n^(1/d))), edges included, in
    boustrophedon (serpentine) order so that consecutive points are neighbours: the cheapest
    way to cover the space when moves cost time. Truncated to n points."""
    k = max(int(np.ceil(n ** (1.0 / d) - 1e-9)), 2)
    axis = np.linspace(0.0, 1.0, k)
    rows = [[]]
    for _ in range(d):  # snake: reverse the new (fastest) axis on every other row
        rows = [r + [a] for i, r in enumerate(rows)
                for a in (axis if i % 2 == 0 else axis[::-1])]
    return np.array(rows)[:n]


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
