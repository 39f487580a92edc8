"""Unit tests: the run-session and posterior messages, the problem and the model settings."""

from __future__ import annotations

import pytest

from agent.config import ConfigError
from agent.errors import MessageError
from agent.messages import PosteriorGrid, SessionStarted
from agent.problem import ModelSettings, Problem, ProblemMismatch
from agent.protocol import StartSessionRequest, parse_request
from tests.service_helpers import ENGINE

TOKEN = "t" * 32
PROBLEM = {"coordinates": [{"name": "x", "low": -1.0, "high": 1.0, "units": "mm",
                            "velocity": 2.0}], "value": "det_norm"}
MODEL = {k: v for k, v in ENGINE.items() if k not in ("coordinates", "value")}


def start(**fields) -> bytes:
    body = {"type": "start_session", "session": TOKEN, "uid": "run-1", "problem": PROBLEM,
            **fields}
    return StartSessionRequest.model_validate(body).model_dump_json().encode()


def test_start_session_parses_and_names_bad_fields():
    request = parse_request(start(continue_session="run-0"))
    assert isinstance(request, StartSessionRequest)
    assert request.problem.names == ["x"] and request.continue_session == "run-0"
    with pytest.raises(MessageError, match=r"start_session.uid='a/b': String should match"):
        parse_request(b'{"type": "start_session", "session": "' + TOKEN.encode()
                      + b'", "uid": "a/b", "problem": {"coordinates": [{"name": "x", '
                      b'"low": 0, "high": 1}], "value": "v"}}')
    with pytest.raises(MessageError, match=r"problem.coordinates.0.*low=2.0 must be < high=1.0"):
        parse_request(b'{"type": "start_session", "session": "' + TOKEN.encode()
                      + b'", "uid": "r", "problem": {"coordinates": [{"name": "x", '
                      b'"low": 2, "high": 1}], "value": "v"}}')
    with pytest.raises(MessageError, match=r"start_session.session"):
        parse_request(b'{"type": "start_session", "uid": "r", "problem": {}}')


def test_posterior_request_is_bounded():
    assert parse_request(b'{"type": "posterior", "shape": [100, 100]}').shape == [100, 100]
    for shape, limit in (("[101, 2]", "less than or equal to 100"),
                         ("[1, 5]", "greater than or equal to 2"),
                         ("[5, 5, 5]", "at most 2 items")):
        with pytest.raises(MessageError, match=limit):
            parse_request(b'{"type": "posterior", "shape": %s}' % shape.encode())


def test_posterior_grid_checks_its_shape_and_round_trips():
    grid = PosteriorGrid(uid="r", coordinates=["x", "y"], units=["mm", "mm"],
                         axes=[[0.0, 1.0], [0.0, 1.0, 2.0]], mean=[0.0] * 6, std=[1.0] * 6,
                         value="v", n_measurements=3)
    assert grid.shape == (2, 3)
    assert PosteriorGrid.from_msgpack(grid.to_msgpack()) == grid
    assert PosteriorGrid.from_json(grid.to_json()) == grid
    with pytest.raises(MessageError, match="mean has 5 and std 6 values; the grid"):
        PosteriorGrid.from_json(grid.to_json().replace(b"[0.0,0.0,0.0,0.0,0.0,0.0]",
                                                        b"[0.0,0.0,0.0,0.0,0.0]"))


def test_session_started_round_trips():
    s = SessionStarted(uid="r0", run_uid="r1", continued=True, runs=["r0", "r1"],
                       n_measurements=4, config={"value": "v"})
    assert SessionStarted.from_json(s.to_json()) == s


def test_problem_mismatch_names_field_and_both_values():
    mine, theirs = Problem.model_validate(PROBLEM), Problem.model_validate(PROBLEM)
    mine.check_same(theirs, "session s")
    other = Problem.model_validate({**PROBLEM, "coordinates": [
        {**PROBLEM["coordinates"][0], "units": "um"}]})
    with pytest.raises(ProblemMismatch, match="coordinate 'x': units='um' differs from "
                                              "session s's units='mm'"):
        other.check_same(theirs, "session s")
    with pytest.raises(ProblemMismatch, match="value='i0' differs"):
        Problem.model_validate({**PROBLEM, "value": "i0"}).check_same(theirs, "session s")
    faster = Problem.model_validate({**PROBLEM, "coordinates": [
        {**PROBLEM["coordinates"][0], "velocity": 9.0}]})
    faster.check_same(theirs, "session s")  # velocities are travel hints, not the problem


def test_model_settings_without_a_problem_join_a_runs_problem():
    settings = ModelSettings.from_section(MODEL)
    assert settings.default is None
    assert "coordinates" not in settings.to_jsonable()
    config = settings.engine_config(Problem.model_validate(PROBLEM))
    assert config.names == ["x"] and config.value == "det_norm"
    assert config.coordinates[0].velocity == 2.0
    assert config.initial_design.n_points == MODEL["initial_design"]["n_points"]
    with pytest.raises(ConfigError, match="no problem"):
        settings.engine_config()


def test_model_settings_with_coordinates_are_a_default_that_must_match():
    settings = ModelSettings.from_section(ENGINE)
    assert settings.default.names == ["x", "y"]
    assert settings.engine_config().names == ["x", "y"]
    narrow = Problem.model_validate({"coordinates": [
        {**c, "low": -2.0} for c in ENGINE["coordinates"]], "value": "det_norm"})
    with pytest.raises(ProblemMismatch, match="low=-2.0 differs from the agent config's"):
        settings.engine_config(narrow)
    with pytest.raises(ConfigError, match="value missing"):
        ModelSettings.from_section({**MODEL, "coordinates": ENGINE["coordinates"]})
    with pytest.raises(ConfigError, match=r"engine.initial_design.n_pointz"):
        ModelSettings.from_section({**MODEL, "initial_design": {"n_pointz": 3}})
