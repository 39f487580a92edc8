"""gp_scan configuring a model-only agent (real service, real ZeroMQ sockets) with ophyd's
simulated motors: each run a session of its own, a run continuing another by uid, the live
view of the posterior drawn (Agg) and saved with the run's extents, and ``beamagent
status``."""

from __future__ import annotations

import time

import matplotlib
import pytest
from bluesky import RunEngine
from matplotlib.figure import Figure
from ophyd.sim import Syn2DGauss, SynAxis

from agent.client import AgentClient
from agent.problem import ModelSettings
from agent.reducers import ScalarReducer
from agent.service import serve_in_thread
from agent.status_cli import fetch_status, format_status
from plans.cli import main as beamagent
from plans.errors import PlanArgumentError
from plans.gp_scan import gp_scan
from plans.live_view import LiveAgentMap
from tests.plans_helpers import Documents
from tests.service_helpers import ENGINE

pytestmark = pytest.mark.system

MODEL_ONLY = {**{k: v for k, v in ENGINE.items() if k not in ("coordinates", "value")},
              "initial_design": {"n_points": 4}}
N = 10
BOUNDS_X, BOUNDS_Y = (-4.0, 4.0), (-2.0, 3.0)


@pytest.fixture
def setup():
    matplotlib.use("Agg")  # the test's choice; library modules never set a backend
    handle = serve_in_thread(ModelSettings.from_section(MODEL_ONLY))
    client = AgentClient(handle.request_address, timeout_s=10)
    mx, my = SynAxis(name="mx"), SynAxis(name="my")
    det = Syn2DGauss("det", mx, "mx", my, "my", center=(1.0, 0.5), Imax=100.0, sigma=1.5)
    reducer = ScalarReducer(detector="det", monitor=None, positions={"x": "mx", "y": "my"},
                            request_address=handle.request_address)
    yield handle, client, reducer, (det, mx, my)
    reducer.close()
    client.close()
    handle.stop()


def run(RE, devices, client, reducer, callbacks, **kwargs) -> Documents:
    det, mx, my = devices
    docs = Documents()
    RE(gp_scan([det], mx, BOUNDS_X, my, BOUNDS_Y, agent=client, reducer=reducer,
               max_points=N, **kwargs), [docs, *callbacks])
    return docs


def wait_measured(handle, uid: str, n: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while handle.service.runs.get(uid).n_measurements() < n:
        assert time.monotonic() < deadline, f"session {uid}: fewer than {n} measurements"
        time.sleep(0.02)


def test_runs_configure_their_sessions_continue_explicitly_and_show_live(setup, tmp_path):
    handle, client, reducer, devices = setup
    RE = RunEngine(call_returns_result=True)
    live = LiveAgentMap(handle.request_address, every=4, shape=(30, 20), fig=Figure(),
                        save=tmp_path / "live.png")
    try:
        first = run(RE, devices, client, reducer, [live])
    finally:
        live.close()
    uid1 = first.start()["uid"]
    wait_measured(handle, uid1, N)
    config = first.start()["agent_config"]
    assert [c["name"] for c in config["coordinates"]] == ["x", "y"]  # the reducer's names
    assert [(c["low"], c["high"]) for c in config["coordinates"]] == [BOUNDS_X, BOUNDS_Y]
    assert config["coordinates"][0]["velocity"] == 1.0  # SynAxis velocity, read at start
    assert config["value"] == "det_norm"

    # the live view: drawn every few points and at the stop, the run's extents, a PNG
    assert live.updates >= 2, live.last_error
    assert (tmp_path / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for ax in live.axes:  # mean, std
        assert ax.images[0].get_extent() == [*BOUNDS_X, *BOUNDS_Y]
    assert live.last_grid.shape == (30, 20) and live.last_grid.n_measurements == N

    # a second run (a new sample): a session of its own, none of the first run's data
    second = run(RE, devices, client, reducer, [])
    assert second.stream("proposals")[0]["data"]["proposal_n_measurements"] == 0
    # a third run continues the first, by its uid: the first's measurements are used
    third = run(RE, devices, client, reducer, [], continue_session=uid1)
    assert third.start()["agent_session"] == uid1
    assert third.stream("proposals")[0]["data"]["proposal_n_measurements"] == N
    wait_measured(handle, uid1, 2 * N)
    uid2 = second.start()["uid"]
    assert handle.service.runs.get(uid2).n_measurements() == N
    assert handle.service.runs.get(uid1).runs == [uid1, third.start()["uid"]]

    # continuing with other bounds is refused, naming the coordinate and both values
    det, mx, my = devices
    with pytest.raises(PlanArgumentError, match=r"coordinate 'x': low=-3.0 differs from "
                                                r"session .*'s low=-4.0"):
        RE(gp_scan([det], mx, (-3.0, 4.0), my, BOUNDS_Y, agent=client, reducer=reducer,
                   max_points=2, continue_session=uid1))

    # beamagent status: the sessions with their points
    text = format_status(handle.request_address, fetch_status(handle.request_address, 5.0))
    assert "2 run sessions" in text
    row = next(line.split() for line in text.splitlines() if line.strip().startswith(uid1))
    assert row[:4] == [uid1, "2", str(2 * N), "0"]  # session, runs, points, pending
    line = next(line for line in text.splitlines() if line.strip().startswith(uid1))
    assert " points" in line  # the start-up design's column: "<n> points"


def test_status_command_prints_sessions_or_one_line_when_no_service(setup, capsys):
    handle = setup[0]
    assert beamagent(["status", "--address", handle.request_address]) == 0
    assert "0 run sessions" in capsys.readouterr().out
    assert beamagent(["status", "--address", "tcp://127.0.0.1:9", "--timeout-s", "0.3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["beamagent status: no agent service answered at tcp://127.0.0.1:9 within "
                   "0.3 s"]


def test_posterior_before_a_model_is_an_error_the_view_survives(setup):
    handle, client, *_ = setup
    live = LiveAgentMap(handle.request_address, fig=Figure())
    live.start({"uid": "nothing-yet"})
    live.stop({})
    assert live.updates == 0 and "no run session 'nothing-yet'" in live.last_error
    live.close()
