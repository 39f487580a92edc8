"""Camera frames from a :class:`~sim.optics.model.BeamAtCamera`, and areaDetector NDStats.

Frame (pixel ``(iy, ix)``; x along columns, y along rows, the optical axis at the sensor
centre ``((size_x - 1)/2, (size_y - 1)/2)`` px):

    lambda = F * frac_pixel * counts_per_photon * t + background_cps * t
    counts = min(Poisson(lambda), max_count)          -> uint16 (size_y, size_x)

``frac_pixel`` is the Gaussian's integral over the pixel: exact per row in y (erf), and in
x given y (the conditional Gaussian, erf) at 4 Gauss-Legendre nodes within the row, so a
correlated (tilted) spot is integrated too. Rows farther than 8 sigma are skipped.

:func:`nd_stats` follows ADCore ``NDPluginStats.cpp`` (``doComputeStatisticsT``,
``doComputeCentroidT``): Total, Min/Max/Mean over all pixels; the centroid moments use only
pixels with ``value >= CentroidThreshold``, weighted by the raw value (the threshold is not
subtracted), with pixel indices as coordinates: CentroidX = M10/M00, SigmaX =
sqrt(mu20/M00), SigmaXY = mu11 / (M00 SigmaX SigmaY). If no pixel reaches the threshold
(M00 = 0) NDStats leaves the previous values; here they are NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from sim.optics.model import BeamAtCamera
from sim.optics.params import CameraParams

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(4)


def expected_counts(beam: BeamAtCamera, camera: CameraParams, exposure_s: float) -> np.ndarray:
    """Mean counts per pixel (size_y, size_x) for one exposure (module doc)."""
    px = camera.pixel_um
    cx = beam.centroid_x_um / px + (camera.size_x - 1) / 2  # in pixel units
    cy = beam.centroid_y_um / px + (camera.size_y - 1) / 2
    sx, sy = max(beam.sigma_x_um / px, 1e-6), max(beam.sigma_y_um / px, 1e-6)
    rho = float(np.clip(beam.correlation_xy, -0.999999, 0.999999))
    image = np.zeros((camera.size_y, camera.size_x))
    rows = np.arange(max(0, int(cy - 8 * sy - 1)), min(camera.size_y, int(cy + 8 * sy + 2)))
    if rows.size:
        image[rows] = _rows(rows, camera.size_x, cx, cy, sx, sy, rho)
    scale = beam.flux_ph_s * camera.counts_per_photon * exposure_s
    return image * scale + camera.background_cps * exposure_s


def _rows(rows: np.ndarray, size_x: int, cx: float, cy: float, sx: float, sy: float,
          rho: float) -> np.ndarray:
    """Pixel fractions of N((cx, cy), [[sx^2, rho sx sy], ..]) for ``rows`` (pixel units)."""
    lo, hi = rows - 0.5, rows + 0.5
    mass = 0.5 * (erf((hi - cy) / (np.sqrt(2) * sy)) - erf((lo - cy) / (np.sqrt(2) * sy)))
    y = (lo + hi)[:, None] / 2 + _GL_NODES[None, :] / 2  # (rows, 4) nodes in each row
    w = _GL_WEIGHTS * np.exp(-0.5 * ((y - cy) / sy) ** 2)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300) * mass[:, None]
    mx = cx + rho * sx / sy * (y - cy)  # conditional mean and rms of x given y
    s = np.sqrt(2) * sx * np.sqrt(1 - rho * rho)
    edges = np.arange(size_x + 1) - 0.5
    cdf = 0.5 * erf((edges[None, None, :] - mx[:, :, None]) / s)
    return np.einsum("rk,rkx->rx", w, np.diff(cdf, axis=2))


def render(beam: BeamAtCamera, camera: CameraParams, exposure_s: float,
           rng: np.random.Generator) -> np.ndarray:
    """One frame: Poisson counts of :func:`expected_counts`, saturated at ``max_count``."""
    counts = rng.poisson(expected_counts(beam, camera, exposure_s))
    return np.minimum(counts, camera.max_count).astype(np.uint16)


def nd_stats(image: np.ndarray, centroid_threshold: float = 0.0) -> dict[str, float]:
    """NDStats of a 2-D image (module doc); keys are ``sim.camera_record.StatsGroup``
    attribute names: total, max_value, min_value, mean_value, centroid_x, centroid_y,
    sigma_x, sigma_y, sigma_xy (centroids and sigmas in pixels)."""
    v = np.asarray(image, float)
    out = {"total": float(v.sum()), "max_value": float(v.max()),
           "min_value": float(v.min()), "mean_value": float(v.mean())}
    w = np.where(v >= centroid_threshold, v, 0.0)
    m00 = w.sum()
    if m00 <= 0:
        return out | dict.fromkeys(("centroid_x", "centroid_y", "sigma_x", "sigma_y",
                                    "sigma_xy"), float("nan"))
    iy, ix = np.indices(v.shape)
    cx, cy = (w * ix).sum() / m00, (w * iy).sum() / m00
    var_x = (w * ix * ix).sum() / m00 - cx * cx
    var_y = (w * iy * iy).sum() / m00 - cy * cy
    sx, sy = np.sqrt(max(var_x, 0.0)), np.sqrt(max(var_y, 0.0))
    cov = (w * ix * iy).sum() / m00 - cx * cy
    sxy = cov / (sx * sy) if sx > 0 and sy > 0 else 0.0
    return out | {"centroid_x": float(cx), "centroid_y": float(cy), "sigma_x": float(sx),
                  "sigma_y": float(sy), "sigma_xy": float(sxy)}
