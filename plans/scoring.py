"""Score maps against the simulator's hidden ground truth, at equal beamtime.

Used by the demo and benchmarks only: a real beamline has no ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator


@dataclass(frozen=True)
class Truth:
    """The expected reduced signal det/i0 on a regular grid: ``z[i, j]`` at ``(xs[j], ys[i])``."""

    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray

    def points(self) -> np.ndarray:
        """All grid points, (n*n, 2), rows in the order of ``z.ravel()``."""
        gx, gy = np.meshgrid(self.xs, self.ys)
        return np.column_stack([gx.ravel(), gy.ravel()])


def rmse(estimate: np.ndarray, truth: Truth) -> float:
    """Root-mean-square error of ``estimate`` (same shape as truth.z) against the truth."""
    return float(np.sqrt(np.mean((np.asarray(estimate) - truth.z) ** 2)))


def raster_map(xs: np.ndarray, ys: np.ndarray, values: np.ndarray, truth: Truth) -> np.ndarray:
    """A raster scan's map on the truth grid: bilinear interpolation between grid points.

    ``values[i, j]`` was measured at ``(xs[j], ys[i])``; xs and ys increase.
    """
    interpolate = RegularGridInterpolator((ys, xs), values, bounds_error=False, fill_value=None)
    gx, gy = np.meshgrid(truth.xs, truth.ys)
    return interpolate(np.column_stack([gy.ravel(), gx.ravel()])).reshape(truth.z.shape)


def path_length(points: np.ndarray) -> float:
    """Total Euclidean length of the path through ``points`` (m, d) in order."""
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0


def motion_time_s(points: np.ndarray, velocity: float, acceleration_s: float) -> float:
    """Time (s) to visit ``points`` (n, d) in order, axes moving together at ``velocity``
    (egu/s) with a trapezoidal profile: ``acceleration_s`` (motor record ACCL) to reach
    velocity and as long to stop, so a move of d takes d / velocity + ACCL, or
    2 * sqrt(d * ACCL / velocity) when it is too short to reach velocity (d < velocity * ACCL).
    The simulated motor record moves this way (sim.motor_motion)."""
    if len(points) < 2:
        return 0.0
    steps = np.abs(np.diff(points, axis=0)).max(axis=1)
    ramp = velocity * acceleration_s
    times = np.where(steps >= ramp, steps / velocity + acceleration_s,
                     2.0 * np.sqrt(steps * acceleration_s / velocity))
    return float(times.sum())
