"""The plain-Python face (agent.experimenter.AutonomousExperimenter) as a newcomer meets it:
one test per defect of the "fails a newcomer" issue, small N throughout."""

import numpy as np
import pytest

from agent.config import ConfigError, load_engine_config
from agent.errors import AgentError
from agent.experimenter import AutonomousExperimenter
from configs import DEFAULT_AGENT

BOUNDS = {"x": (-5.0, 5.0), "y": (-5.0, 5.0)}


class Runaway(BaseException):
    """Escapes go()'s failure handling, so a loop that would never end fails the test fast."""


def peak(x: float, y: float) -> float:
    return float(np.exp(-((x - 1.0) ** 2 + (y + 1.0) ** 2) / 4.0))


def instrument(points):
    return [peak(p["x"], p["y"]) for p in points]


def test_always_failing_instrument_stops_with_a_clear_error():
    calls = []

    def broken(points):
        calls.append(len(points))
        if len(calls) > 200:
            raise Runaway(f"go() called a broken instrument {len(calls)} times")
        raise OSError("detector offline")

    ae = AutonomousExperimenter(broken, bounds=BOUNDS)  # the default limit
    with pytest.raises(AgentError, match=r"10 consecutive.*max_consecutive_failures.*"
                                         r"detector offline"):
        ae.go(N=5)
    assert len(calls) == 10
    calls.clear()
    ae = AutonomousExperimenter(broken, bounds=BOUNDS, max_consecutive_failures=3,
                                batch_size=2)
    with pytest.raises(AgentError, match=r"4 consecutive .*max_consecutive_failures=3"):
        ae.go(N=5)
    assert len(calls) == 2  # 4 failed points >= 3; the batch is recorded whole

    flaky_calls = []

    def flaky(points):  # every other call fails: never 2 in a row, so the run completes
        flaky_calls.append(1)
        if len(flaky_calls) % 2:
            raise OSError("beam dump")
        return instrument(points)

    ae = AutonomousExperimenter(flaky, bounds=BOUNDS, max_consecutive_failures=2)
    assert "max_points" in ae.go(N=6)
    assert len(ae.y_data) == 6 and len(ae.engine.measurements) == 12
    with pytest.raises(ConfigError, match="max_consecutive_failures=0"):
        AutonomousExperimenter(instrument, bounds=BOUNDS, max_consecutive_failures=0)


def classic7(data):
    """gpCAM 7's tutorial instrument: reads entry["position"], fills value and variance."""
    for entry in data:
        entry["value"] = peak(*entry["position"])
        entry["variance"] = 1e-4
    return data


def classic8_in_place(data):
    """gpCAM 8's names (x_data, y_data, noise variance), filled in place, nothing returned."""
    for entry in data:
        entry["y_data"] = peak(*entry["x_data"])
        entry["noise variance"] = 1e-4


def fills_named(data):
    """Our coordinate names, the value filled in place, the dicts returned."""
    for entry in data:
        entry["value"] = peak(entry["x"], entry["y"])
        entry["variance"] = 1e-4
    return data


@pytest.mark.parametrize("instrument_fn", [classic7, classic8_in_place, fills_named])
@pytest.mark.parametrize("value", ["value", "det"])
def test_instrument_may_fill_its_point_dicts(instrument_fn, value):
    calls = []

    def guarded(data):
        calls.append(1)
        if len(calls) > 50:
            raise Runaway("every point failed and go() kept calling")
        return instrument_fn(data)

    ae = AutonomousExperimenter(guarded, bounds=BOUNDS, value=value, batch_size=3)
    assert "max_points" in ae.go(N=6)
    ms = ae.engine.measurements
    assert len(ms) == 6 and all(m.failure is None for m in ms)
    for m in ms:
        assert set(m.positions) == {"x", "y"}
        assert m.values[value] == pytest.approx(peak(m.positions["x"], m.positions["y"]))
        assert m.variances == {value: 1e-4}
    ae.close()


def test_gpcam_style_bounds_array():
    parameters = np.array([[3.0, 45.8], [4.0, 47.0]])  # gpCAM's parameters: (d, 2)

    def inst(points):
        return [p["x0"] + p["x1"] for p in points]

    ae = AutonomousExperimenter(inst, bounds=parameters)
    ae.go(N=4)
    assert ae.engine.space.names == ["x0", "x1"]
    assert np.all((ae.x_data >= parameters[:, 0]) & (ae.x_data <= parameters[:, 1]))
    np.testing.assert_allclose(ae.y_data, ae.x_data.sum(axis=1))

    ae = AutonomousExperimenter(lambda ps: [p["th"] for p in ps], bounds=[[0, 1], [2, 3]],
                                names=["th", "tth"])
    ae.go(N=3)
    assert ae.engine.space.names == ["th", "tth"]
    with pytest.raises(ConfigError, match=r"bounds.*shape \(3,\)"):
        AutonomousExperimenter(inst, bounds=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ConfigError, match=r"names.*2 names.*3 rows"):
        AutonomousExperimenter(inst, bounds=np.zeros((3, 2)) + [0, 1], names=["a", "b"])


def test_init_dataset_size_is_accepted():
    ae = AutonomousExperimenter(instrument, bounds=BOUNDS, init_dataset_size=5)
    ae.go(N=7)
    assert ae.engine.config.initial_design.n_points == 5
    with pytest.raises(ConfigError, match=r"init_dataset_size=5.*initial_design.n_points=8"):
        AutonomousExperimenter(instrument, bounds=BOUNDS, init_dataset_size=5,
                               initial_design={"n_points": 8})
    with pytest.raises(ConfigError, match=r"init_hyperparameters.*training"):
        AutonomousExperimenter(instrument, bounds=BOUNDS, init_hyperparameters=[1, 1, 1])


def test_acquisition_none_is_refused():
    with pytest.raises(ConfigError, match=r"acquisition=None.*'mapping'.*'ucb'"):
        AutonomousExperimenter(instrument, bounds=BOUNDS, acquisition=None)


def _run(seed: int, **options):
    ae = AutonomousExperimenter(instrument, bounds=BOUNDS, seed=seed, batch_size=2, **options)
    ae.go(N=45)  # trainings at N = 10, 20 and 40
    g = np.linspace(-5, 5, 9)
    grid = np.array([[a, b] for a in g for b in g])
    out = ae.x_data, ae.y_data, *ae.posterior(grid), ae.engine.status()["hyperparameters"]
    ae.close()
    return out


def test_same_seed_same_run_by_default():
    first = _run(seed=3)
    for _ in range(2):  # background training differed in 11 of 11 repeats of this run
        for a, b in zip(first, _run(seed=3), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_run(seed=4)[0], first[0])  # the seed matters


@pytest.mark.parametrize("options", [{}, {"reproducible": False}], ids=["default", "background"])
def test_posterior_after_go_includes_every_measurement(options):
    ae = AutonomousExperimenter(instrument, bounds=BOUNDS, **options)
    for n in (25, 45):  # a continued run rebuilds the engine and retrains
        ae.go(N=n)
        assert not ae.engine.status()["training"]["running"]
        # noise sd is 1e-2 of the values' sd: the posterior reproduces every told value
        mean, var = ae.posterior(ae.x_data)
        assert len(mean) == n
        np.testing.assert_allclose(mean, ae.y_data, atol=0.02)
        ae.engine.wait_for_training()
        again = ae.posterior(ae.x_data)
        np.testing.assert_array_equal(again[0], mean)  # the model no longer changes
        np.testing.assert_array_equal(again[1], var)
    ae.close()


def test_from_config_loads_the_shipped_settings():
    ae = AutonomousExperimenter.from_config(DEFAULT_AGENT, instrument)
    ae.go(N=18)
    shipped, used = load_engine_config(DEFAULT_AGENT), ae.engine.config
    same = {"stop", "training"}
    assert used.model_dump(exclude=same) == shipped.model_dump(exclude=same)
    assert used.training.model_dump(exclude={"background"}) == \
        shipped.training.model_dump(exclude={"background"})
    assert not used.training.background  # the face's reproducible default
    assert used.stop.max_points == 18
    assert used.value == "det_norm" and len(ae.y_data) == 18
    assert all("det_norm" in m.values for m in ae.engine.measurements)
    ae.close()
