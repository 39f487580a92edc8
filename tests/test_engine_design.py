"""Engine pieces added for map-kind benchmarking (issue 11): the mean-only map."""

import numpy as np
import pytest

from agent.config import make_engine_config
from agent.engine import Engine
from agent.errors import AgentError, MessageError
from agent.messages import Measurement


def cfg(**over):
    base = {"coordinates": [
        {"name": "x", "low": -5, "high": 5, "units": "mm", "velocity": 5.0},
        {"name": "y", "low": 0, "high": 10, "units": "mm", "velocity": 5.0}],
        "value": "det", "stop": {"max_points": 40}, "initial_design": {"n_points": 9},
        "training": {"background": False}, "overhead_s": 0.5}
    base.update(over)
    return make_engine_config(base)


def fill(engine, n):
    rng = np.random.default_rng(3)
    for seq, (x, y) in enumerate(rng.uniform([-5, 0], [5, 10], (n, 2))):
        v = 0.1 + float(np.exp(-((x - 1) ** 2 + (y - 4) ** 2) / 4.0))
        engine.tell(Measurement(run_uid="d", seq=seq, positions={"x": x, "y": y},
                                values={"det": v}, variances={"det": 1e-5}))
    return engine


@pytest.mark.parametrize("model", ["gp", "log_gp"])
def test_posterior_mean_is_posteriors_mean_in_chunks(model):
    e = fill(Engine(cfg(model=model)), 30)
    pts = np.column_stack([np.linspace(-5, 5, 37), np.linspace(0, 10, 37)])
    mu, _ = e.posterior(pts)
    assert np.allclose(e.posterior_mean(pts), mu, rtol=1e-8, atol=1e-10)
    assert np.allclose(e.posterior_mean(pts, chunk=5), mu, rtol=1e-8, atol=1e-10)
    e.close()


def test_posterior_mean_refuses_bad_shape_and_no_model():
    e = Engine(cfg())
    with pytest.raises(AgentError, match="no model yet"):
        e.posterior_mean(np.zeros((3, 2)))
    fill(e, 5)
    with pytest.raises(MessageError, match="3 columns"):
        e.posterior_mean(np.zeros((2, 3)))
    e.close()


@pytest.mark.parametrize("start, first", [(None, (-10.0, -10.0)), ({"x": 9.0, "y": -9.0},
                                                                    (10.0, -10.0))])
def test_raster_start_runs_serpentine_at_raster_beamtime(start, first):
    """A 10 x 10 raster start moves only between neighbours (nearest-first used to zig-zag
    on Chebyshev ties and end with long jumps), from the end nearer the motors."""
    coord = {"low": -10.0, "high": 10.0, "units": "mm", "velocity": 5.0}
    e = Engine(make_engine_config({
        "coordinates": [{"name": "x", **coord}, {"name": "y", **coord}], "value": "det",
        "stop": {"max_points": 400}, "training": {"background": False}, "overhead_s": 0.5,
        "initial_design": {"method": "raster", "n_points": 100}}))
    pos, pts = start, []
    for seq in range(100):
        prop = e.ask(1, current_position=pos)
        assert prop.phase == "initial_design"
        pos = prop.points[0]
        pts.append([pos["x"], pos["y"]])
        e.tell(Measurement(run_uid="r", seq=seq, positions=pos, values={"det": 1.0}))
    pts = np.array(pts)
    assert tuple(pts[0]) == pytest.approx(first)
    hops = np.max(np.abs(np.diff(pts, axis=0)), axis=1)
    assert np.allclose(hops, 20.0 / 9)  # every move is to a neighbour on the raster
    assert len({tuple(p) for p in pts.round(6)}) == 100
    e.close()


def test_raster_start_is_a_full_raster_within_a_third_of_the_budget():
    from agent.engine import design_size

    def size(n, max_points, method="raster"):
        return design_size(cfg(initial_design={"method": method, "n_points": n},
                               stop={"max_points": max_points}), 2)
    assert size(100, 100_000) == 100  # 10 x 10
    assert size(100, 300) == 100
    assert size(100, 150) == 49  # a third of 150: a full 7 x 7, not 50 points of a 10 x 10
    assert size(100, 20) == 4  # at least 2 x 2
    assert size(10, 300) == 9  # full 3 x 3
    assert size(10, 300, "sobol") == 10  # other designs: n_points as given
    e = Engine(cfg(initial_design={"method": "raster", "n_points": 100},
                   stop={"max_points": 60}))
    pos, xs = None, set()
    for seq in range(16):
        prop = e.ask(1, current_position=pos)
        assert prop.phase == "initial_design"
        pos = prop.points[0]
        xs.add(round(pos["x"], 6))
        e.tell(Measurement(run_uid="r", seq=seq, positions=pos, values={"det": 1.0}))
    assert len(xs) == 4  # the 4 x 4 raster covers the whole x range
    assert e.ask(1, current_position=pos).phase == "gp"
    e.close()
