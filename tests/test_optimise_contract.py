"""The optimisers' ask/tell contract: pending points, failures never modelled, the stop
condition, proposals within bounds and travel limits, reproducibility, config validation."""

import numpy as np
import pytest

from agent.config import ConfigError
from agent.errors import MessageError
from agent.messages import Measurement
from agent.optimise import (
    AutonomousOptimiser,
    NelderMeadConfig,
    RandomSearchConfig,
    SequentialScanConfig,
    TrustRegionBOConfig,
    make_config,
    make_optimiser,
)

COORDS = [{"name": "a", "low": -5.0, "high": 5.0, "units": "mm"},
          {"name": "b", "low": 0.0, "high": 10.0, "units": "urad"},
          {"name": "c", "low": 0.0, "high": 1.0, "units": "%"}]
START = {"a": 2.0, "b": 3.0, "c": 0.2}
ALL = [TrustRegionBOConfig, NelderMeadConfig, RandomSearchConfig, SequentialScanConfig]


def config(cls=TrustRegionBOConfig, **over):
    base = {"coordinates": COORDS, "value": "flux", "start": START, "max_evaluations": 30}
    return make_config(cls, {**base, **over})


def f(p):
    return float(np.exp(-((p["a"] + 1) ** 2 / 4 + (p["b"] - 5) ** 2 / 8
                          + (p["c"] - 0.5) ** 2 / 0.1)))


def meas(p, seq, failure=None):
    if failure:
        return Measurement(run_uid="t", seq=seq, positions=p, failure=failure)
    y = f(p)
    return Measurement(run_uid="t", seq=seq, positions=p, values={"flux": y},
                       variances={"flux": (0.01 * y) ** 2})


def drive(opt, n, batch=1, fail=lambda p: False):
    seq, props = 0, []
    while seq < n:
        prop = opt.ask(batch)
        props.append(prop)
        if prop.phase == "done":
            break
        for p in prop.points:
            opt.tell(meas(p, seq, "beam lost" if fail(p) else None))
            seq += 1
    return props


def test_config_refuses_unknown_keys_missing_stop_and_bad_start():
    with pytest.raises(ConfigError, match="betta"):
        config(betta=2)
    with pytest.raises(ConfigError, match="max_evaluations"):
        make_config(TrustRegionBOConfig, {"coordinates": COORDS, "value": "flux",
                                          "start": START})
    with pytest.raises(ConfigError, match="outside bounds"):
        config(start={**START, "a": 9.0})
    with pytest.raises(ConfigError, match="start must give"):
        config(start={"a": 0.0})


def test_every_knob_has_a_description():
    for cls in ALL:
        for name, fld in cls.model_fields.items():
            assert fld.description, f"{cls.__name__}.{name} lacks a description"


@pytest.mark.parametrize("cls", ALL)
def test_first_point_is_start_and_stop_condition(cls):
    opt = make_optimiser(config(cls, max_evaluations=12))
    props = drive(opt, 50)
    if cls is SequentialScanConfig:  # a relative scan of the first coordinate around start
        first = [m.positions for m in opt.measurements[:opt.config.points_per_scan]]
        assert all(p["b"] == START["b"] and p["c"] == START["c"] for p in first)
        assert np.mean([p["a"] for p in first]) == pytest.approx(START["a"])
    else:
        assert props[0].points[0] == pytest.approx(START)
    assert props[-1].phase == "done" and "max_evaluations" in props[-1].stop_reason
    assert len(opt.measurements) == 12
    assert opt.best()[1] == max(m.values["flux"] for m in opt.measurements)
    opt.close()


def test_pending_points_count_and_release():
    opt = make_optimiser(config(max_evaluations=5))
    prop = opt.ask(3)
    assert len(prop.points) == 3 and len(opt.pending) == 3
    assert opt.ask(5).points.__len__() == 2  # the budget counts pending points
    assert opt.ask(1).phase == "done"
    assert opt.release(prop.points[:2]) == 2
    assert len(opt.pending) == 3
    with pytest.raises(MessageError, match="outside bounds"):
        opt.release([{"a": 99.0, "b": 1.0, "c": 0.1}])


def test_failures_recorded_never_modelled():
    opt = make_optimiser(config(max_evaluations=25, n_initial=4))
    drive(opt, 25, fail=lambda p: p["a"] > 2.5)
    failed = [m for m in opt.measurements if m.failure]
    assert failed and len(opt.measurements) == 25
    assert len(opt._x) == 25 - len(failed)  # the GP's data holds successes only
    assert all(m.positions["a"] <= 2.5 for m in opt.measurements if m.failure is None)


def test_gp_phase_provenance_and_bounds():
    opt = make_optimiser(config(max_evaluations=20, n_initial=4))
    props = drive(opt, 20, batch=2)
    gp = [p for p in props if p.phase == "gp"]
    assert gp and gp[-1].hyperparameters and gp[-1].acquisition_function == "ucb"
    assert gp[-1].n_measurements > 4 and gp[-1].decision_time_s >= 0
    for m in opt.measurements:
        for c in COORDS:
            assert c["low"] <= m.positions[c["name"]] <= c["high"]


@pytest.mark.parametrize("cls", [TrustRegionBOConfig, RandomSearchConfig])
def test_travel_limit(cls):
    opt = make_optimiser(config(cls, max_evaluations=20, max_step_fraction=0.05,
                                **({"n_initial": 4} if cls is TrustRegionBOConfig else {})))
    here = dict(START)
    for seq in range(20):
        prop = opt.ask(2, current_position=here)
        for p in prop.points:
            for c in COORDS:
                span = c["high"] - c["low"]
                assert abs(p[c["name"]] - here[c["name"]]) <= 0.05 * span + 1e-9
            opt.tell(meas(p, 2 * seq + prop.points.index(p)))
            here = p
        if prop.phase == "done":
            break


def test_reproducible_with_the_same_seed():
    runs = []
    for _ in range(2):
        opt = make_optimiser(config(max_evaluations=16, n_initial=4, seed=3))
        drive(opt, 16)
        runs.append([m.positions for m in opt.measurements])
    assert runs[0] == runs[1]
    opt = make_optimiser(config(max_evaluations=16, n_initial=4, seed=4))
    drive(opt, 16)
    assert [m.positions for m in opt.measurements] != runs[0]


def test_measurement_without_the_value_refused():
    opt = make_optimiser(config())
    with pytest.raises(MessageError, match="values lack"):
        opt.tell(Measurement(run_uid="t", seq=0, positions=START, values={"other": 1.0}))


def test_autonomous_optimiser_on_a_python_function():
    calls = []

    def g(p):
        calls.append(p)
        if p["x"] > 4.5:
            raise RuntimeError("beam lost")
        return -((p["x"] - 1) ** 2) - (p["y"] + 2) ** 2

    ao = AutonomousOptimiser(lambda p: np.exp(g(p) / 4), {"x": (-5, 5), "y": (-5, 5)},
                             start={"x": 3.0, "y": 0.0}, n_initial=4)
    assert "max_evaluations" in ao.go(25)
    point, value = ao.best
    assert len(ao.measurements) == 25 and value > np.exp(g({"x": 3.0, "y": 0.0}) / 4)
    assert abs(point["x"] - 1) < 1.0 and abs(point["y"] + 2) < 1.0
    ao.go(30)
    assert len(ao.measurements) == 30
    ao.close()
