"""The posterior of a session's engine on a coarse regular grid (the ``posterior`` request).

At most ``MAX_GRID_SIDE`` points per axis, one or two axes: 10,000 points at most, about
0.3 s of the worker's time (variance in chunks, ``agent.acquisition.posterior_mean_std``).
"""

from __future__ import annotations

import numpy as np

from agent.engine import Engine
from agent.errors import MessageError
from agent.messages import PosteriorGrid
from agent.protocol import PosteriorRequest


def posterior_grid(engine: Engine, uid: str, request: PosteriorRequest) -> PosteriorGrid:
    """Mean and std on the requested grid. Raises MessageError naming the coordinate and
    value for an unknown coordinate or an ``at`` outside the bounds, AgentError while the
    engine has no model yet."""
    space = engine.space
    names = list(request.coordinates or space.names[:len(request.shape)])
    if len(names) != len(request.shape):
        raise MessageError(f"posterior: coordinates {names} for a grid of shape "
                           f"{request.shape}: need one coordinate per axis")
    unknown = [n for n in names if n not in space.names]
    if unknown or len(set(names)) != len(names):
        raise MessageError(f"posterior: coordinates {names}: each must be one of "
                           f"{space.names}, once")
    at = {n: float((lo + hi) / 2) for n, lo, hi in zip(space.names, space.low, space.high,
                                                       strict=True) if n not in names}
    extra = sorted(set(request.at or {}) - set(at))
    if extra:
        raise MessageError(f"posterior: at={request.at}: {extra} are grid axes or unknown; "
                           f"give only {sorted(at)}")
    at.update(request.at or {})
    index = {n: i for i, n in enumerate(space.names)}
    axes = [np.linspace(space.low[index[n]], space.high[index[n]], k)
            for n, k in zip(names, request.shape, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    points = np.empty((mesh[0].size, space.d))
    for n, grid in zip(names, mesh, strict=True):
        points[:, index[n]] = grid.ravel()
    for n, value in at.items():
        points[:, index[n]] = value
    space.position({**{n: float(a[0]) for n, a in zip(names, axes, strict=True)}, **at},
                   what="posterior at")  # bounds of ``at``, named
    mean, variance = engine.posterior(points)
    return PosteriorGrid(
        uid=uid, coordinates=names, units=[space.units[index[n]] for n in names],
        axes=[a.tolist() for a in axes], at=at, mean=np.asarray(mean).tolist(),
        std=np.sqrt(np.clip(variance, 0, None)).tolist(), value=engine.config.value,
        n_measurements=engine.status()["n_measurements"])
