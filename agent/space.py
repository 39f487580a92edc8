"""The search space: named coordinates in engineering units <-> the unit cube [0, 1]^d."""

from __future__ import annotations

import numpy as np

from agent.config import EngineConfig
from agent.errors import MessageError

#: readbacks may sit this fraction of a range outside the bounds (motor deadband) and are clipped
BOUNDS_SLACK = 1e-3


class Space:
    """Normalisation and validation of positions for one EngineConfig."""

    def __init__(self, config: EngineConfig):
        self.names = config.names
        self.units = [c.units for c in config.coordinates]
        self.low = np.array([c.low for c in config.coordinates], dtype=float)
        self.high = np.array([c.high for c in config.coordinates], dtype=float)
        self.span = self.high - self.low
        self.velocity = np.array([c.velocity or np.inf for c in config.coordinates], dtype=float)
        self.d = len(self.names)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """(m, d) engineering units -> unit cube."""
        return (np.asarray(x, dtype=float) - self.low) / self.span

    def to_eng(self, u: np.ndarray) -> np.ndarray:
        """(m, d) unit cube -> engineering units."""
        return self.low + np.asarray(u, dtype=float) * self.span

    def as_dicts(self, u: np.ndarray) -> list[dict[str, float]]:
        """Unit-cube rows -> [{name: value in engineering units}]."""
        return [dict(zip(self.names, map(float, row), strict=True)) for row in self.to_eng(u)]

    def position(self, positions: dict[str, float], what: str = "position") -> np.ndarray:
        """Validate a {name: value} mapping and return its unit-cube point (d,).

        Raises MessageError naming the coordinate, the value and the bound for an unknown or
        missing coordinate, a non-finite value or a value outside the bounds.
        """
        unknown = sorted(set(positions) - set(self.names))
        if unknown:
            raise MessageError(f"{what}: unknown coordinate(s) {unknown}; "
                               f"the engine's coordinates are {self.names}")
        missing = [n for n in self.names if n not in positions]
        if missing:
            raise MessageError(f"{what}: missing coordinate(s) {missing}")
        x = np.array([positions[n] for n in self.names], dtype=float)
        for i, n in enumerate(self.names):
            if not np.isfinite(x[i]):
                raise MessageError(f"{what}: {n}={x[i]!r} is not finite")
            slack = BOUNDS_SLACK * self.span[i]
            if not self.low[i] - slack <= x[i] <= self.high[i] + slack:
                raise MessageError(
                    f"{what}: {n}={x[i]} {self.units[i]} outside bounds "
                    f"[{self.low[i]}, {self.high[i]}] {self.units[i]}")
        return np.clip(self.to_unit(x), 0.0, 1.0)


def near(u: np.ndarray, points: np.ndarray, tol: float) -> np.ndarray:
    """Boolean (m,): rows of ``u`` within Chebyshev distance ``tol`` of any row of ``points``."""
    if len(points) == 0:
        return np.zeros(len(u), dtype=bool)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(points).query(u, k=1, p=np.inf)
    return d <= tol
