"""CoordinateConfig.resolution: the model-based phase proposes no point closer than a
coordinate's resolution (the beam footprint) to a measured or pending one."""

import numpy as np
import pytest

from agent.config import ConfigError, make_engine_config
from agent.engine import Engine
from agent.messages import Measurement


def engine(resolution):
    coord = {"low": -10, "high": 10, "units": "mm", "velocity": 5.0}
    coords = [{"name": n, **coord, **({"resolution": r} if r else {})}
              for n, r in zip("xy", resolution, strict=True)]
    return Engine(make_engine_config({
        "coordinates": coords, "value": "det", "stop": {"max_points": 500},
        "initial_design": {"n_points": 9}, "training": {"background": False},
        "acquisition": "variation", "kernel": "multiscale", "overhead_s": 0.5}))


def closest(e, n=40, seed=0):
    """Run n points on a sharp peak (which draws points to it); per model-based proposal, the
    Chebyshev distance (mm) to the nearest measured point."""
    rng = np.random.default_rng(seed)
    pos, gaps = None, []
    for seq in range(n):
        prop = e.ask(1, current_position=pos)
        p = prop.points[0]
        if prop.phase == "gp":
            done = np.array([[m.positions["x"], m.positions["y"]] for m in e.measurements])
            gaps.append(np.min(np.abs(done - [p["x"], p["y"]]).max(axis=1)))
        v = float(np.exp(-((p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2) / 0.5))
        e.tell(Measurement(run_uid="r", seq=seq, positions=p,
                           values={"det": v + rng.normal(0, 1e-3)}))
        pos = p
    e.close()
    return np.array(gaps)


def test_no_model_based_point_is_closer_than_the_resolution():
    gaps = closest(engine((1.5, 1.5)))
    assert len(gaps) > 20
    assert gaps.min() > 1.5
    assert closest(engine((None, None))).min() < 1.5  # without it, the peak is crowded


def test_resolution_must_be_positive():
    with pytest.raises(ConfigError, match=r"coordinates\.0\.resolution"):
        engine((-1.0, None))


def test_a_resolution_reached_everywhere_still_gives_points():
    # 5 mm over a 20 mm square: after a few dozen points no candidate is 5 mm from all
    e = engine((5.0, 5.0))
    gaps = closest(e, n=60)
    assert len(gaps) > 40  # every ask was answered with a point
    assert gaps.min() < 5.0  # ... closer than the resolution once it was reached
