"""Run sessions on the real service (a subprocess on loopback, real ZeroMQ): each run's
measurements kept apart, a later run continuing an earlier one by uid, the sessions kept
across a SIGKILL and restart, and the posterior of a session on a coarse grid."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from agent.client import AgentClient, AgentRequestError
from agent.messages import Measurement
from tests.service_helpers import ENGINE, Requester, free_tcp_port, kill_group, start_service

pytestmark = pytest.mark.system

# the model settings alone: the plans bring the problem
MODEL_ONLY = {k: v for k, v in ENGINE.items() if k not in ("coordinates", "value")}
MODEL_ONLY["initial_design"] = {"n_points": 4}


def problem(low: float = -10.0, high: float = 10.0) -> dict:
    return {"coordinates": [
        {"name": "x", "low": low, "high": high, "units": "mm", "velocity": 5.0},
        {"name": "y", "low": -5.0, "high": 5.0, "units": "mm", "velocity": 2.0}],
        "value": "det_norm"}


@pytest.fixture
def service(tmp_path):
    """``start()`` runs the service (model-only YAML, checkpoint dir) and waits until it
    answers; returns (process, request address). All SIGKILLed at the end."""
    ports = {k: free_tcp_port() for k in ("request_port", "measurement_port", "status_port")}
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"engine": MODEL_ONLY, "service": {
        **ports, "checkpoint_dir": str(tmp_path / "ck"), "status_interval_s": 0.2}}))
    address = f"tcp://127.0.0.1:{ports['request_port']}"
    procs = []

    def start():
        procs.append(start_service(config, tmp_path / "agent.log"))
        requester = Requester(address)
        try:
            requester.wait_ready(procs[-1])
        finally:
            requester.close()
        return procs[-1], address

    yield start
    for proc in procs:
        kill_group(proc)


def value_at(p: dict, offset: float) -> float:
    return float(np.exp(-(p["x"] ** 2 + p["y"] ** 2) / 20) + offset)


async def measure(client: AgentClient, run_uid: str, n: int, offset: float, seq0: int = 0
                  ) -> list:
    """Ask and tell ``n`` points of run ``run_uid``; returns the proposals."""
    proposals = []
    for seq in range(seq0, seq0 + n):
        proposal = await client.ask(1)
        point = proposal.points[0]
        await client.tell(Measurement(run_uid=run_uid, seq=seq, positions=point,
                                      values={"det_norm": value_at(point, offset)}))
        proposals.append(proposal)
    return proposals


async def test_runs_keep_their_data_apart_continue_by_uid_and_survive_a_restart(service):
    proc, address = service()
    a, b = AgentClient(address, timeout_s=10), AgentClient(address, timeout_s=10)
    try:
        started = await a.start_session("run-a", problem())
        assert (started.uid, started.continued, started.n_measurements) == ("run-a", False, 0)
        assert started.config["coordinates"][1]["velocity"] == 2.0  # the plan's, not a YAML's
        await measure(a, "run-a", 6, offset=0.0)
        # a second run (a new sample): none of run-a's data
        started = await b.start_session("run-b", problem())
        assert started.n_measurements == 0
        first = (await measure(b, "run-b", 3, offset=5.0))[0]
        assert first.n_measurements == 0 and first.phase == "initial_design"
        status = await a.status()
        sessions = status["run_sessions"]["sessions"]
        assert sessions["run-a"]["n_measurements"] == 6
        assert sessions["run-b"]["n_measurements"] == 3
        assert "default" not in sessions  # the YAML names no problem
    finally:
        a.close()
        b.close()

    kill_group(proc)  # SIGKILL, then a restart in the same directory
    proc, address = service()
    c = AgentClient(address, timeout_s=10)
    try:
        status = (await c.status())["run_sessions"]["sessions"]
        assert status["run-a"]["n_measurements"] == 6
        assert status["run-b"]["n_measurements"] == 3
        # a new run after the restart starts empty: no silent reuse of the last sample's data
        fresh = await c.start_session("run-e", problem())
        assert fresh.n_measurements == 0
        assert (await c.ask(1)).n_measurements == 0
        # a third run continues the first, explicitly, by its uid
        cont = await c.start_session("run-c", problem(), continue_session="run-a")
        assert (cont.uid, cont.continued, cont.runs) == ("run-a", True, ["run-a", "run-c"])
        assert cont.n_measurements == 6
        proposals = await measure(c, "run-c", 2, offset=0.0)
        assert proposals[0].n_measurements == 6 and proposals[1].n_measurements == 7
        status = (await c.status())["run_sessions"]["sessions"]
        assert status["run-a"]["n_measurements"] == 8
        assert status["run-b"]["n_measurements"] == 3
        assert status["run-e"]["n_measurements"] == 0

        with pytest.raises(AgentRequestError, match=r"coordinate 'x': low=-8.0 differs from "
                           r"session run-a's low=-10.0") as refused:
            await c.start_session("run-d", problem(low=-8.0), continue_session="run-a")
        assert refused.value.code == "problem_mismatch"
        with pytest.raises(AgentRequestError, match="no run session 'nope'"):
            await c.start_session("run-f", problem(), continue_session="nope")
        with pytest.raises(AgentRequestError, match="run 'stray' belongs to no run session"):
            await c.tell(Measurement(run_uid="stray", seq=0, positions={"x": 0.0, "y": 0.0},
                                     values={"det_norm": 1.0}))

        grid = await c.posterior((20, 10), uid="run-a")
        assert grid.shape == (20, 10) and grid.coordinates == ["x", "y"]
        assert (grid.axes[0][0], grid.axes[0][-1]) == (-10.0, 10.0)
        assert (grid.axes[1][0], grid.axes[1][-1]) == (-5.0, 5.0)
        assert grid.n_measurements == 8 and len(grid.mean) == len(grid.std) == 200
        assert all(np.isfinite(grid.mean)) and min(grid.std) >= 0
        with pytest.raises(AgentRequestError, match=r"shape.0=101: .*less than or equal to 100"):
            await c.posterior((101, 10), uid="run-a")
    finally:
        c.close()


async def test_a_runs_budget_is_its_sessions_and_a_continued_session_goes_on(service):
    _, address = service()
    client = AgentClient(address, timeout_s=10)
    try:
        started = await client.start_session("run-5", {**problem(),
                                                       "budget": {"max_points": 5}})
        assert started.config["budget"] == {"max_points": 5, "max_time_s": None}
        assert started.config["stop"]["max_points"] == MODEL_ONLY["stop"]["max_points"]  # not 5
        await measure(client, "run-5", 5, offset=0.0)
        # a later run of 5 more points continues the session: it is not done
        started = await client.start_session("run-more", {**problem(),
                                                          "budget": {"max_points": 5}},
                                             continue_session="run-5")
        assert started.continued and started.n_measurements == 5
        assert (await client.ask(1)).phase != "done"
        started = await client.start_session("run-free", problem())
        assert started.config["budget"] is None
    finally:
        client.close()


async def test_idle_engines_unload_beyond_the_limit_and_rebuild_with_their_data():
    from agent.problem import ModelSettings
    from agent.service import serve_in_thread
    from agent.service_config import ServiceConfig

    config = ServiceConfig(request_port=0, measurement_port=0, status_port=0,
                           max_loaded_sessions=1)
    with serve_in_thread(ModelSettings.from_section(MODEL_ONLY), config) as handle:
        client = AgentClient(handle.request_address, timeout_s=10)
        try:
            await client.start_session("run-a", problem())
            await measure(client, "run-a", 3, offset=0.0)
            await client.start_session("run-b", problem())
            await measure(client, "run-b", 1, offset=0.0)
            sessions = (await client.status())["run_sessions"]["sessions"]
            assert not sessions["run-a"]["loaded"] and sessions["run-a"]["n_measurements"] == 3
            again = await client.start_session("run-c", problem(), continue_session="run-a")
            assert again.n_measurements == 3
            assert (await client.ask(1)).n_measurements == 3
        finally:
            client.close()


async def test_a_yaml_with_coordinates_refuses_a_run_with_other_bounds():
    from agent.config import EngineConfig
    from agent.service import serve_in_thread

    with serve_in_thread(EngineConfig.model_validate(ENGINE)) as handle:
        client = AgentClient(handle.request_address, timeout_s=10)
        try:
            ok = await client.start_session("run-a", {**problem(), "coordinates": [
                {**c, "velocity": 1.0} for c in ENGINE["coordinates"]]})
            assert ok.config["coordinates"][0]["velocity"] == 1.0  # the run's velocity
            with pytest.raises(AgentRequestError, match="coordinate 'y': low=-5.0 differs "
                               "from the agent config's low=-10.0") as refused:
                await client.start_session("run-b", problem())
            assert refused.value.code == "problem_mismatch"
        finally:
            client.close()
