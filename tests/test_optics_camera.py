"""Camera frames and NDStats: counts match the beam, NDStats matches ADCore's definitions."""

from __future__ import annotations

import numpy as np
import pytest

from sim.optics import OpticsModel, default_bounds
from sim.optics.camera import expected_counts, nd_stats, render
from sim.optics.model import BeamAtCamera
from sim.optics.params import CameraParams
from sim.optics.scoring import find_optimum

CAM = CameraParams(background_cps=0.0)


def beam(**kw) -> BeamAtCamera:
    base = dict(flux_ph_s=1e10, centroid_x_um=6.5, centroid_y_um=-3.25, sigma_x_um=3.0,
                sigma_y_um=2.0, correlation_xy=0.0, fraction_on_sensor=1.0)
    return BeamAtCamera(**(base | kw))


def test_nd_stats_on_a_hand_made_image():
    img = np.zeros((4, 5), np.uint16)
    img[1, 1], img[1, 3], img[2, 3], img[0, 0] = 10, 30, 20, 2
    s = nd_stats(img, centroid_threshold=5)  # the 2 is below threshold: not in the centroid
    assert s["total"] == 62 and s["max_value"] == 30 and s["min_value"] == 0
    assert s["mean_value"] == pytest.approx(62 / 20)
    m00 = 60.0
    cx, cy = (10 * 1 + 30 * 3 + 20 * 3) / m00, (10 * 1 + 30 * 1 + 20 * 2) / m00
    assert s["centroid_x"] == pytest.approx(cx) and s["centroid_y"] == pytest.approx(cy)
    vx = (10 * (1 - cx) ** 2 + 30 * (3 - cx) ** 2 + 20 * (3 - cx) ** 2) / m00
    vy = (10 * (1 - cy) ** 2 + 30 * (1 - cy) ** 2 + 20 * (2 - cy) ** 2) / m00
    cov = (10 * (1 - cx) * (1 - cy) + 30 * (3 - cx) * (1 - cy) + 20 * (3 - cx) * (2 - cy)) / m00
    assert s["sigma_x"] == pytest.approx(np.sqrt(vx)) and s["sigma_y"] == pytest.approx(np.sqrt(vy))
    assert s["sigma_xy"] == pytest.approx(cov / np.sqrt(vx * vy))


def test_threshold_is_inclusive_and_not_subtracted():
    img = np.array([[5, 0, 5]])
    s = nd_stats(img, centroid_threshold=5)
    assert s["centroid_x"] == 1.0 and s["sigma_x"] == 1.0


def test_no_pixel_above_threshold_gives_nan_centroid():
    assert np.isnan(nd_stats(np.zeros((3, 3)), 1.0)["centroid_x"])


def test_expected_counts_integrate_to_the_flux_and_sit_at_the_centroid():
    b = beam(correlation_xy=0.5)
    lam = expected_counts(b, CAM, 0.01)
    assert lam.sum() == pytest.approx(1e10 * CAM.counts_per_photon * 0.01, rel=1e-6)
    s = nd_stats(lam)
    assert s["centroid_x"] == pytest.approx((CAM.size_x - 1) / 2 + 10.0, abs=1e-3)
    assert s["centroid_y"] == pytest.approx((CAM.size_y - 1) / 2 - 5.0, abs=1e-3)
    # pixel binning adds pixel^2/12 (Sheppard): sigma in px = sqrt((s/px)^2 + 1/12)
    assert s["sigma_x"] == pytest.approx(np.hypot(3.0 / 0.65, np.sqrt(1 / 12)), rel=1e-3)
    assert s["sigma_xy"] == pytest.approx(0.5 * 3 * 2 / np.hypot(3, 0.65 / np.sqrt(12))
                                          / np.hypot(2, 0.65 / np.sqrt(12)), rel=1e-2)


def test_render_is_poisson_saturated_uint_and_seeded():
    b = beam(sigma_x_um=0.3, sigma_y_um=0.3, flux_ph_s=1e13)
    a = render(b, CAM, 0.01, np.random.default_rng(3))
    assert a.dtype == np.uint16 and a.shape == (CAM.size_y, CAM.size_x)
    assert a.max() == CAM.max_count
    assert np.array_equal(a, render(b, CAM, 0.01, np.random.default_rng(3)))


def test_reducer_recovers_the_objective_from_nd_stats():
    """J from NDStats of a frame at the optimum equals the model's J within noise."""
    model = OpticsModel()
    pos, j_star = find_optimum(model, default_bounds())
    cam, t = model.params.camera, 0.01
    img = render(model.beam(pos), cam, t, np.random.default_rng(0))
    s = nd_stats(img, centroid_threshold=5.0)  # above the background (0.1 counts/pixel)
    px = cam.pixel_um
    rate = (s["total"] - cam.background_cps * t * cam.size_x * cam.size_y) / t
    cx = (s["centroid_x"] - (cam.size_x - 1) / 2) * px
    cy = (s["centroid_y"] - (cam.size_y - 1) / 2) * px
    wx, wy = (cam.window_fraction * cam.size_x * px, cam.window_fraction * cam.size_y * px)
    j = rate / (2 * np.pi * s["sigma_x"] * s["sigma_y"] * px * px) * np.exp(
        -0.5 * ((cx / wx) ** 2 + (cy / wy) ** 2))
    assert j == pytest.approx(j_star, rel=0.1)
