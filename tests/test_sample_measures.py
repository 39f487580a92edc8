"""The demo's per-kind measures on the simulator's samples (plans.sample_measures)."""

import numpy as np

from plans.sample_measures import kind_measures, map_kind
from plans.scoring import Truth
from sim.samples import make_sample

XS = np.linspace(-10, 10, 101)


def to_value(signal):  # an affine det/i0 like sim.physics: gain 0.2, offset 1e-5
    return 0.2 * np.asarray(signal) + 1e-5


def truth_of(sample) -> Truth:
    gx, gy = np.meshgrid(XS, XS)
    return Truth(XS, XS, to_value(sample.signal(gx, gy, None)))


def test_boundary_samples_score_their_walls():
    for name in ("domains", "phase_boundary"):
        s = make_sample(name, seed=1)
        t = truth_of(s)
        assert map_kind(s) == "boundary"
        assert kind_measures(s, to_value, t, t.z)["boundary_error_mm"] == 0.0
        shifted = np.roll(t.z, 5, axis=1)  # walls moved by 1 mm in x (0.2 mm pixels)
        err = kind_measures(s, to_value, t, shifted)["boundary_error_mm"]
        assert 0.2 < err < 1.5


def test_particles_found_in_the_truth_not_in_a_flat_map():
    s = make_sample("particles", seed=0)
    t = truth_of(s)
    assert map_kind(s) == "sparse"
    m = kind_measures(s, to_value, t, t.z)
    assert m["features_found"] >= 0.9 and m["false_detections"] == 0
    flat = kind_measures(s, to_value, t, np.full(t.z.shape, to_value(s.background)))
    assert flat["features_found"] == 0.0
