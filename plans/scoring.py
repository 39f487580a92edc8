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


def level_contour(z: np.ndarray, level: float) -> np.ndarray:
    """Pixels (bool, z.shape) where ``z`` crosses ``level`` between 4-neighbours (both sides)."""
    above = z > level
    mask = np.zeros_like(above)
    h = above[:, 1:] != above[:, :-1]
    v = above[1:, :] != above[:-1, :]
    mask[:, 1:] |= h
    mask[:, :-1] |= h
    mask[1:, :] |= v
    mask[:-1, :] |= v
    return mask


def boundary_error_mm(z_true: np.ndarray, z_map: np.ndarray, levels, pixel_mm: float) -> float:
    """Boundary localisation error (mm): the symmetric mean distance between the true and the
    mapped level contours, ``(mean over true-contour pixels of the distance to the mapped
    contour + mean over mapped-contour pixels of the distance to the true contour) / 2``,
    averaged over ``levels`` weighted by the true contour's length. A level the map never
    crosses scores the side of the map. Both maps on one square grid of ``pixel_mm`` pixels.
    Raises ValueError if no level crosses the truth."""
    from scipy import ndimage

    total, weight = 0.0, 0
    for level in levels:
        true, mapped = level_contour(z_true, level), level_contour(z_map, level)
        if not true.any():
            continue
        if not mapped.any():
            err = pixel_mm * (max(z_true.shape) - 1)
        else:
            to_true = ndimage.distance_transform_edt(~true) * pixel_mm
            to_mapped = ndimage.distance_transform_edt(~mapped) * pixel_mm
            err = 0.5 * (to_mapped[true].mean() + to_true[mapped].mean())
        total += err * true.sum()
        weight += int(true.sum())
    if weight == 0:
        raise ValueError(f"boundary_error_mm: no level of {list(levels)} crosses the truth")
    return float(total / weight)


def features_found(z_map: np.ndarray, xs: np.ndarray, ys: np.ndarray, centres: np.ndarray,
                   heights: np.ndarray, background: np.ndarray, radius_mm: float
                   ) -> tuple[float, int]:
    """(fraction of features found, false detections) of a map of sparse features.

    A feature (centre (x, y) mm, height above background) is found when the map has a local
    maximum (3 x 3) at least background + half its height within ``radius_mm`` of its centre.
    A false detection is a local maximum at least background + half the smallest height that
    lies farther than ``radius_mm`` from every centre (a plateau counts once). ``z_map[i, j]``
    and ``background[i, j]`` at ``(xs[j], ys[i])``."""
    from scipy import ndimage

    centres, heights = np.asarray(centres, float).reshape(-1, 2), np.asarray(heights, float)
    above = z_map - background
    peak = z_map >= ndimage.maximum_filter(z_map, size=3, mode="nearest")
    labels, n = ndimage.label(peak & (above >= 0.5 * np.min(heights)))
    if n == 0:
        return 0.0, 0
    idx = np.arange(1, n + 1)
    row, col = np.array(ndimage.center_of_mass(np.ones_like(z_map), labels, idx)).T
    mx, my = np.interp(col, np.arange(len(xs)), xs), np.interp(row, np.arange(len(ys)), ys)
    top = np.array(ndimage.maximum(above, labels, idx))
    dist = np.hypot(mx[:, None] - centres[None, :, 0], my[:, None] - centres[None, :, 1])
    near = dist <= radius_mm
    found = np.any(near & (top[:, None] >= 0.5 * heights[None, :]), axis=0)
    return float(np.mean(found)), int(np.sum(~np.any(near, axis=1)))
