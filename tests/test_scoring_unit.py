"""Map measures against a known truth (plans.scoring): boundary error and features found."""

import numpy as np
import pytest

from plans.scoring import boundary_error_mm, features_found

XS = np.linspace(-10, 10, 201)  # 0.1 mm pixels
GX, GY = np.meshgrid(XS, XS)


def test_boundary_error_is_the_shift_of_a_straight_wall():
    truth = (GX > 0).astype(float)
    shifted = (GX > 1.0).astype(float)
    assert boundary_error_mm(truth, truth, [0.5], 0.1) == 0.0
    assert boundary_error_mm(truth, shifted, [0.5], 0.1) == pytest.approx(1.0, abs=0.06)


def test_boundary_error_of_a_flat_map_is_the_side_and_no_crossing_raises():
    truth = (GX > 0).astype(float)
    assert boundary_error_mm(truth, np.zeros_like(truth), [0.5], 0.1) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="no level"):
        boundary_error_mm(np.zeros_like(truth), truth, [0.5], 0.1)


def peaks(centres, height=1.0, sigma=0.3):
    z = np.full(GX.shape, 0.1)
    for cx, cy in centres:
        z += height * np.exp(-((GX - cx) ** 2 + (GY - cy) ** 2) / (2 * sigma ** 2))
    return z


def test_features_found_and_false_detections():
    centres, heights = np.array([[-5.0, -5.0], [5.0, 5.0]]), np.array([1.0, 1.0])
    bg = np.full(GX.shape, 0.1)
    assert features_found(peaks(centres), XS, XS, centres, heights, bg, 1.0) == (1.0, 0)
    # one found, one missed, and one peak where there is none
    z = peaks([[-5.0, -5.0], [0.0, 8.0]])
    assert features_found(z, XS, XS, centres, heights, bg, 1.0) == (0.5, 1)
    # a peak 0.5 mm off its centre is found within 1 mm, not within 0.3 mm
    z = peaks([[-4.5, -5.0], [5.0, 5.0]])
    assert features_found(z, XS, XS, centres, heights, bg, 1.0)[0] == 1.0
    assert features_found(z, XS, XS, centres, heights, bg, 0.3) == (0.5, 1)
    # too low (below half the height above background): not found
    assert features_found(peaks(centres, 0.4), XS, XS, centres, heights, bg, 1.0) == (0.0, 0)
