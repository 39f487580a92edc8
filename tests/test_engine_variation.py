"""'variation' acquisition options: residual measure, mirrored boundary, travel horizon."""

import numpy as np
import pytest

from agent.acquisition import local_residual, plane_residuals
from agent.config import ConfigError, make_engine_config
from agent.engine import Engine
from agent.messages import Measurement


def cfg(velocity=5.0, overhead_s=0.5, **over):
    coord = {"units": "mm", "velocity": velocity}
    base = {"coordinates": [{"name": "x", "low": -5, "high": 5, **coord},
                            {"name": "y", "low": 0, "high": 10, **coord}],
            "value": "det", "stop": {"max_points": 60}, "initial_design": {"n_points": 9},
            "training": {"background": False}, "overhead_s": overhead_s,
            "acquisition": "variation", "kernel": "multiscale"}
    base.update(over)
    return make_engine_config(base)


def run(engine, n, f):
    pos = None
    for seq in range(n):
        for p in engine.ask(1, current_position=pos).points:
            engine.tell(Measurement(run_uid="v", seq=seq, positions=p, values={"det": f(p)}))
            pos = p
    return engine


def test_plane_residuals_vanish_on_a_plane_and_flag_a_lone_spike():
    rng = np.random.default_rng(0)
    x = rng.random((200, 2))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 1
    assert np.max(plane_residuals(x, y)) < 1e-4
    y2 = y.copy()
    y2[17] += 1.0  # a feature standing on one point
    r = plane_residuals(x, y2)
    assert np.argmax(r) == 17 and r[17] > 0.8
    assert local_residual(x[17:18] + 1e-3, x, y2)[0] > 0.8  # a candidate next to it sees it
    assert plane_residuals(x[:3], y[:3]).tolist() == [0.0, 0.0, 0.0]  # too few points


def test_residual_variation_puts_points_on_a_step():
    """A wall at x = 0.3: the residual measure refines it, as the range measure does."""
    c = cfg(variation_measure="residual", variation_floor=0.25, travel_exponent=2.0,
            stop={"max_points": 70}, initial_design={"method": "raster", "n_points": 16})
    e = run(Engine(c), 70, lambda p: 1.0 if p["x"] > 0.3 else 0.1)
    x = np.array([m.positions["x"] for m in e.measurements[16:]])
    assert np.mean(np.abs(x - 0.3) < 1.5) > 0.5
    e.close()


def test_mirror_boundary_keeps_points_off_the_edges():
    def edge_distance(e):
        u = np.array([[(m.positions["x"] + 5) / 10, m.positions["y"] / 10]
                      for m in e.measurements[9:]])
        return float(np.min(np.minimum(u, 1 - u)))

    flat = lambda p: 1.0  # noqa: E731
    free = run(Engine(cfg(velocity=None, overhead_s=0.0)), 40, flat)
    mirror = run(Engine(cfg(velocity=None, overhead_s=0.0, coverage_boundary="mirror")), 40,
                 flat)
    assert edge_distance(mirror) > 0.02 and edge_distance(mirror) > edge_distance(free)
    free.close()
    mirror.close()


def _batches(engine, n_points: int) -> np.ndarray:
    pos, seq = None, 0
    while seq < n_points:
        prop = engine.ask(3, current_position=pos)
        assert len(prop.points) == 3
        for p in prop.points:
            assert -5 <= p["x"] <= 5 and 0 <= p["y"] <= 10
            engine.tell(Measurement(run_uid="h", seq=seq, positions=p, values={
                "det": float(np.exp(-(p["x"] ** 2 + (p["y"] - 5) ** 2)))}))
            seq, pos = seq + 1, p
    xy = np.array([[m.positions["x"], m.positions["y"]] for m in engine.measurements])
    engine.close()
    return xy


def test_travel_horizon_batches_are_valid_and_chosen_differently():
    xy = _batches(Engine(cfg(travel_horizon=10, stop={"max_points": 40})), 30)
    assert len(np.unique(np.round(xy, 6), axis=0)) == len(xy)
    myopic = _batches(Engine(cfg(stop={"max_points": 40})), 30)
    assert not np.allclose(xy, myopic)  # the horizon branch decides (same seed, same data)


def test_new_option_values_validated():
    with pytest.raises(ConfigError, match="variation_measure"):
        cfg(variation_measure="slope")
    with pytest.raises(ConfigError, match="coverage_boundary"):
        cfg(coverage_boundary="wrap")
    with pytest.raises(ConfigError, match="travel_horizon"):
        cfg(travel_horizon=1)
