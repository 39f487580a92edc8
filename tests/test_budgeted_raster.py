"""The beamtime-sized, interleaved raster start (issue 11): sizing, order, and the decision
to skip its second pass where the map's error is localised."""

import numpy as np
import pytest

from agent.config import ConfigError, make_engine_config
from agent.design import (
    first_pass_size,
    plateau_share,
    raster,
    raster_shape,
    raster_sizes,
    residual_share,
)
from agent.engine import Engine, design_size, raster_beamtime_s
from agent.messages import Measurement


def cfg(design, stop=None):
    coord = {"low": -10, "high": 10, "units": "mm", "velocity": 5.0}
    return make_engine_config({
        "coordinates": [{"name": "x", **coord}, {"name": "y", **coord}], "value": "det",
        "stop": stop or {"max_points": 100_000, "max_time_s": 284.0},
        "initial_design": design, "training": {"background": False}, "overhead_s": 0.5,
        "acquisition": "variation", "kernel": "multiscale"})


def test_raster_beamtime_counts_overhead_and_neighbour_moves():
    # 20 x 20 over 20 mm: 400 * 0.5 s + 399 moves of 20/19 mm at 5 mm/s
    c = cfg({"method": "raster", "n_points": 400})
    assert raster_beamtime_s(c, 400) == pytest.approx(400 * 0.5 + 399 * (20 / 19) / 5.0)
    # interleaved: each pass's 9 row changes are 2 steps long
    c = cfg({"method": "raster", "n_points": 400, "localised_share": 0.4})
    assert raster_beamtime_s(c, 400) == pytest.approx(400 * 0.5 + 417 * (20 / 19) / 5.0)
    # 19 rows of 20: 18 row changes of 20/18 mm, 19 * 19 steps of 20/19 mm along the rows
    assert raster_shape(380, 2) == (19, 20)
    c = cfg({"method": "raster", "n_points": 400})
    assert raster_beamtime_s(c, 380) == pytest.approx(
        380 * 0.5 + (18 * 20 / 18 + 19 * 19 * 20 / 19) / 5.0)


@pytest.mark.parametrize("fraction, budget", [(1.0, 284.1), (0.5, 284.1), (1.0, 95.0)])
@pytest.mark.parametrize("interleaved", [False, True])
def test_budget_fraction_sizes_the_largest_raster_that_fits(fraction, budget, interleaved):
    design = {"method": "raster", "n_points": 10_000, "budget_fraction": fraction}
    if interleaved:
        design["localised_share"] = 0.4
    c = cfg(design, {"max_points": 100_000, "max_time_s": budget})
    m = design_size(c, 2)
    if budget == 284.1 and fraction == 1.0:  # the beamtime of the 20 x 20 serpentine
        assert m == (400 if not interleaved else 380)
    sizes = sorted({s for k in range(2, 30) for s in raster_sizes(k, 2)})
    assert raster_beamtime_s(c, m) <= fraction * budget
    assert raster_beamtime_s(c, sizes[sizes.index(m) + 1]) > fraction * budget


def test_budget_fraction_of_a_point_budget():
    def size(fraction, max_points):
        return design_size(cfg({"method": "raster", "n_points": 10_000,
                                "budget_fraction": fraction}, {"max_points": max_points}), 2)
    assert size(1.0, 150) == 144  # 12 x 12: the largest full raster within 150 points
    assert size(0.5, 150) == 72  # 8 x 9
    assert size(0.5, 100_000) == 10_000  # n_points still caps it


def test_localised_share_must_be_a_fraction():
    with pytest.raises(ConfigError, match="initial_design.localised_share"):
        cfg({"method": "raster", "n_points": 100, "localised_share": 1.5})


@pytest.mark.parametrize("k", [4, 5, 10])
def test_interleaved_raster_is_the_same_grid_in_two_serpentine_passes(k):
    plain, inter = raster(k * k, 2), raster(k * k, 2, interleaved=True)
    assert sorted(map(tuple, plain.round(9))) == sorted(map(tuple, inter.round(9)))
    n1 = first_pass_size(k * k, 2)
    assert n1 == ((k + 1) // 2) * k
    assert first_pass_size(k * (k + 1), 2) == ((k + 1) // 2) * (k + 1)
    step = 1.0 / (k - 1)
    for part in (inter[:n1], inter[n1:]):
        hops = np.max(np.abs(np.diff(part, axis=0)), axis=1)
        # every move is one step along a row, except the row changes (two steps)
        assert np.all(np.isclose(hops, step) | np.isclose(hops, 2 * step))
        assert np.sum(~np.isclose(hops, step)) <= (k + 1) // 2
    assert np.max(np.abs(inter[n1] - inter[n1 - 1])) == pytest.approx(step)
    assert set(np.round(inter[:n1, 0] / step).astype(int)) == set(range(0, k, 2))


def _lattice_values(f, k=14, seed=0):
    n = k * k
    u = raster(n, 2, interleaved=True)[:first_pass_size(n, 2)]
    x = u * 20 - 10
    noise = np.random.default_rng(seed).normal(0, 0.003, len(u))
    return u, f(x[:, 0], x[:, 1]) + noise


def test_residual_share_is_low_for_spread_error_and_high_for_a_wall():
    flat = residual_share(*_lattice_values(lambda x, y: 0.5 + 0 * x))
    ripple = residual_share(*_lattice_values(lambda x, y: 0.5 + 0.3 * np.sin(x) * np.cos(y)))
    wall = residual_share(*_lattice_values(lambda x, y: 0.2 + 0.6 * (x + 0.3 * y > 1.0)))
    assert flat < 0.35 and ripple < 0.35
    assert wall > 0.45


def _three_domains(x, y):
    return 0.2 + 0.3 * (x > -3) + 0.3 * (y > 4)


def test_plateau_share_is_high_between_walls_and_low_on_curved_maps():
    # a coarse first pass over three domains: the walls cross many points, so the residuals
    # look spread, but most points sit on a plateau (noise 0.003, as _lattice_values)
    var = np.full(first_pass_size(14 * 14, 2), 0.003 ** 2)
    walls = plateau_share(*_lattice_values(_three_domains), var)
    tilted = plateau_share(*_lattice_values(lambda x, y: 0.4 + 0.01 * x - 0.02 * y), var)
    curved = plateau_share(*_lattice_values(lambda x, y: 0.5 + 0.3 * np.sin(x) * np.cos(y)),
                           var)
    assert walls > 0.5 and tilted > 0.9
    assert curved < 0.2
    assert residual_share(*_lattice_values(_three_domains)) < 0.4  # what residual_share alone saw


def _run(engine, f, n):
    pos, seq0 = None, len(engine.measurements)
    for seq in range(seq0, seq0 + n):
        prop = engine.ask(1, current_position=pos)
        pos = prop.points[0]
        engine.tell(Measurement(run_uid="r", seq=seq, positions=pos,
                                values={"det": float(f(pos["x"], pos["y"]))}))
    prop = engine.ask(1, current_position=pos)
    engine.release(prop.points)  # a peek at the next phase
    return prop.phase


@pytest.mark.parametrize("f, second_pass", [
    (lambda x, y: 0.2 + 0.6 * (x + 0.3 * y > 1.0), False),
    (lambda x, y: 0.5 + 0.3 * np.sin(x) * np.cos(y), True)])
def test_engine_skips_the_second_pass_only_where_the_error_is_localised(f, second_pass):
    e = Engine(cfg({"method": "raster", "n_points": 100, "localised_share": 0.4},
                   {"max_points": 1000}))
    n1 = first_pass_size(100, 2)
    assert _run(e, f, n1) == ("initial_design" if second_pass else "gp")
    assert e.raster_decision["second_pass"] is second_pass
    if second_pass:  # the second pass runs to the end of the raster, then the GP takes over
        assert _run(e, f, 100 - n1) == "gp"
    e.close()


@pytest.mark.parametrize("plateaus, second_pass", [(None, True), (0.45, False)])
def test_plateau_share_skips_the_second_pass_over_domains(plateaus, second_pass):
    e = Engine(cfg({"method": "raster", "n_points": 196, "localised_share": 0.4,
                    "plateau_share": plateaus}, {"max_points": 1000}))
    noise = np.random.default_rng(0).normal(0, 0.003, 200)
    pos = None
    for seq in range(first_pass_size(196, 2)):
        pos = e.ask(1, current_position=pos).points[0]
        e.tell(Measurement(run_uid="r", seq=seq, positions=pos,
                           values={"det": float(_three_domains(pos["x"], pos["y"]) + noise[seq])},
                           variances={"det": 0.003 ** 2}))
    e.release(e.ask(1, current_position=pos).points)  # the decision is taken at this ask
    assert e.raster_decision["residual_share"] < 0.4
    assert e.raster_decision["plateau_share"] > 0.45
    assert e.raster_decision["second_pass"] is second_pass
    e.close()


def test_plateau_share_needs_the_two_pass_raster():
    with pytest.raises(ConfigError, match="plateau_share=0.5 needs localised_share"):
        cfg({"method": "raster", "n_points": 100, "plateau_share": 0.5})


def test_a_runs_point_budget_sizes_its_sessions_raster():
    from agent.problem import ModelSettings, Problem

    settings = ModelSettings.from_section({
        "stop": {"max_points": 300, "max_time_s": 600.0}, "overhead_s": 0.5,
        "initial_design": {"method": "raster", "n_points": 2500, "budget_fraction": 1.0}})
    coord = {"name": "x", "low": -10, "high": 10, "velocity": 5.0}
    problem = {"coordinates": [coord, {**coord, "name": "y"}], "value": "det"}
    default = settings.engine_config(Problem(**problem))
    run = settings.engine_config(Problem(**problem, budget={"max_points": 100}))
    assert default.stop.max_points == 300 and design_size(default, 2) == 289  # 17 x 17
    assert run.budget.max_points == 100 and design_size(run, 2) == 100  # 10 x 10
    assert run.stop == default.stop  # the plan enforces its budget; the stop is the config's
