"""System tests of gp_scan: real IOCs over Channel Access, the agent over real ZeroMQ sockets."""

from __future__ import annotations

import os
import signal
import threading
import time

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from agent.client import AgentClient
from agent.reducers import ScalarReducer
from agent.service import serve_in_thread
from agent.wal import MeasurementLog
from plans.errors import PlanArgumentError
from plans.gp_scan import gp_scan
from plans.processes import agent_service
from tests.devices_system_helpers import connect_async_beamline, connect_classic_beamline
from tests.plans_helpers import BOUNDS, POSITIONS, Documents, write_agent_yaml

pytestmark = pytest.mark.system

N_POINTS = 12
FAST_VELO = 50.0  # mm/s: short tests; restored after the module


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)  # before connecting ophyd-async (FIELD_NOTES)


def _fast(RE, bl):
    stage = bl.sample_stage
    RE(bps.mv(stage.x.velocity, FAST_VELO, stage.y.velocity, FAST_VELO))
    RE(bps.mv(stage.x, 0.0, stage.y, 0.0))
    RE(bps.mv(bl.scaler.preset_time, 0.01))


@pytest.fixture(scope="module")
def beamlines(RE, sim_beamline):
    abl = connect_async_beamline(RE, sim_beamline.config_path)
    cbl = connect_classic_beamline(sim_beamline.config_path)
    _fast(RE, abl)
    yield {"ophyd_async": abl, "classic": cbl}
    velo = sim_beamline.config.motor("sample_x").velocity
    RE(bps.mv(abl.sample_stage.x.velocity, velo, abl.sample_stage.y.velocity, velo))


@pytest.fixture
def local_agent(tmp_path):
    handle = serve_in_thread(write_agent_yaml(tmp_path / "agent.yaml"))
    client = AgentClient(handle.request_address, timeout_s=10)
    reducer = ScalarReducer(positions=POSITIONS, address=handle.measurement_address)
    yield handle, client, reducer
    reducer.close()
    client.close()
    handle.stop()


def _plan(bl, client, reducer, **kwargs):
    stage = bl.sample_stage
    return gp_scan([bl.scaler], stage.x, BOUNDS, stage.y, BOUNDS, agent=client, reducer=reducer,
                   **kwargs)


def _check_run(docs: Documents, received: list, n: int) -> None:
    """Every proposal measured once; provenance and the agent's data agree with the events."""
    primary, proposals = docs.stream("primary"), docs.stream("proposals")
    assert [e["seq_num"] for e in primary] == list(range(1, n + 1))
    assert [e["seq_num"] for e in proposals] == list(range(1, n + 1))
    ids = [e["data"]["proposal_id"] for e in proposals]
    assert len(set(ids)) == n, f"a proposal was measured twice: {ids}"
    for event, prop in zip(primary, proposals, strict=True):
        for coord, field in POSITIONS.items():
            assert event["data"][field] == pytest.approx(prop["data"][f"proposal_{coord}"],
                                                         abs=2e-3)
        assert prop["data"]["proposal_n_measurements"] < event["seq_num"]
    assert len(received) == n
    by_seq = {m.seq: m for m in received}
    for event in primary:
        m = by_seq[event["seq_num"] - 1]
        assert m.run_uid == docs.start()["uid"]
        assert m.positions == {c: event["data"][f] for c, f in POSITIONS.items()}
        assert m.values["det_norm"] == pytest.approx(event["data"]["det"] / event["data"]["i0"])
    points = np.array([[e["data"][f] for f in POSITIONS.values()] for e in primary])
    assert len(np.unique(points.round(3), axis=0)) == n, "a point was measured twice"


@pytest.mark.parametrize("flavour", ["ophyd_async", "classic"])
def test_gp_scan_with_agent_service(RE, beamlines, tmp_path, flavour):
    bl = beamlines[flavour]
    docs = Documents()
    with agent_service(write_agent_yaml(tmp_path / "agent.yaml"), tmp_path / "ck",
                       tmp_path) as addresses:
        client = AgentClient(addresses["request"], timeout_s=10)
        reducer = ScalarReducer(positions=POSITIONS, address=addresses["measurement"])
        try:
            RE(_plan(bl, client, reducer, max_points=N_POINTS), docs)
        finally:
            reducer.close()
            client.close()
    received = MeasurementLog(tmp_path / "ck").read()  # what the service wrote ahead
    _check_run(docs, received, N_POINTS)
    start = docs.start()
    assert start["plan_name"] == "gp_scan"
    assert start["agent_config"]["value"] == "det_norm"
    assert start["motors"] == ["sample_x", "sample_y"]


def ctrl_c_at_event(seq_num: int):
    """A callback that sends this process SIGINT, as a scientist's Ctrl-C, once: at the first
    event numbered ``seq_num``."""
    fired = threading.Event()

    def callback(name, doc):
        if name == "event" and doc["seq_num"] == seq_num and not fired.is_set():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)
    return callback


def test_ctrl_c_then_resume_loses_and_repeats_no_point(RE, beamlines, local_agent):
    handle, client, reducer = local_agent
    docs = Documents()
    with pytest.raises(RunEngineInterrupted):
        RE(_plan(beamlines["ophyd_async"], client, reducer, max_points=N_POINTS),
           [docs, ctrl_c_at_event(4)])
    assert RE.state == "paused"
    paused_at = len(docs.stream("primary"))
    assert 4 <= paused_at < N_POINTS
    RE.resume()
    assert RE.state == "idle"
    handle.engine.wait_for_training(30)
    _check_run(docs, _received(handle, docs), N_POINTS)


def test_ctrl_c_then_abort_hands_unmeasured_proposals_back(RE, beamlines, local_agent):
    handle, client, reducer = local_agent
    docs = Documents()
    with pytest.raises(RunEngineInterrupted):
        RE(_plan(beamlines["ophyd_async"], client, reducer, max_points=N_POINTS),
           [docs, ctrl_c_at_event(3)])
    assert handle.engine.status()["n_pending"] >= 1  # the point in progress or the prefetch
    RE.abort("test")
    assert RE.state == "idle"
    assert handle.engine.status()["n_pending"] == 0


def _received(handle, docs: Documents, timeout_s: float = 10.0) -> list:
    """The engine's measurements of this run, once all PUSHed ones have arrived."""
    uid, n = docs.start()["uid"], len(docs.stream("primary"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine = [m for m in handle.engine.measurements if m.run_uid == uid]
        if len(mine) >= n:
            return mine
        time.sleep(0.02)
    return mine


def test_max_time_s_is_the_runs_beamtime_budget(RE, beamlines, local_agent):
    _, client, reducer = local_agent
    docs = Documents()
    t0 = time.monotonic()
    RE(_plan(beamlines["ophyd_async"], client, reducer, max_time_s=3.0), docs)
    took = time.monotonic() - t0
    stop = next(d for n, d in docs.docs if n == "stop")
    assert stop["exit_status"] == "success"
    assert "max_time_s=3.0 reached" in stop["reason"]
    assert 3.0 <= took < 10.0
    assert 0 < len(docs.stream("primary")) < 200  # the config's own budget is 200 points
    start = docs.start()
    assert start["plan_args"]["max_time_s"] == 3.0
    assert start["agent_config"]["budget"] == {"max_time_s": 3.0}  # the session's


def test_refuses_bounds_outside_motor_limits(RE, beamlines, local_agent):
    _, client, reducer = local_agent
    stage = beamlines["ophyd_async"].sample_stage
    docs = Documents()
    with pytest.raises(PlanArgumentError, match=r"sample_x \[-20.0, 3.0\] mm .* \[-10.0, 10.0\]"):
        RE(gp_scan([beamlines["ophyd_async"].scaler], stage.x, (-20, 3), stage.y, BOUNDS,
                   agent=client, reducer=reducer, max_points=3), docs)
    assert not docs.docs, "no run may start before the checks pass"


def test_refuses_unknown_detector_field(RE, beamlines, local_agent):
    handle, client, _ = local_agent
    reducer = ScalarReducer(detector="fluo", positions=POSITIONS, sink=lambda m: None)
    with pytest.raises(PlanArgumentError, match="'fluo' is not read by"):
        RE(_plan(beamlines["classic"], client, reducer, max_points=3))


def test_refuses_bounds_unlike_the_agents(RE, beamlines, local_agent):
    _, client, reducer = local_agent
    stage = beamlines["ophyd_async"].sample_stage
    with pytest.raises(PlanArgumentError, match="differ from the agent's coordinate 'x'"):
        RE(gp_scan([beamlines["ophyd_async"].scaler], stage.x, (-2, 2), stage.y, BOUNDS,
                   agent=client, reducer=reducer, max_points=3))


def test_beam_dump_suspends_and_resumes_with_no_point_lost_or_repeated(
        RE, beamlines, local_agent, sim_beamline):
    from ophyd import EpicsSignal

    from devices.suspenders import suspend_on_beam_loss
    from tests.devices_system_helpers import wait_until

    handle, client, reducer = local_agent
    bl = beamlines["ophyd_async"]
    prefix = sim_beamline.config.prefix
    dump, refill = EpicsSignal(f"{prefix}RING:DUMP"), EpicsSignal(f"{prefix}RING:REFILL")
    docs, times, errors = Documents(), {}, []

    def beam_operator():  # another control room: dump after 4 points, refill 1 s later
        try:
            wait_until(lambda: len(docs.stream("primary")) >= 4, 30, "4 points before the dump")
            times["dump"] = time.time()
            dump.put(1, wait=True)
            time.sleep(1.0)
            times["refill"] = time.time()
            refill.put(1, wait=True)
        except BaseException as exc:
            errors.append(exc)

    suspender = suspend_on_beam_loss(bl.ring_current, 100.0, sleep_s=0.2)
    RE.install_suspender(suspender)
    operator = threading.Thread(target=beam_operator, daemon=True)
    try:
        operator.start()
        RE(_plan(bl, client, reducer, max_points=N_POINTS), docs)
    finally:
        RE.remove_suspender(suspender)
        operator.join(timeout=30)
        refill.put(1, wait=True)
        dump.destroy()
        refill.destroy()
    assert not errors, errors
    assert "refill" in times, "the beam was never dumped: the test proved nothing"
    primary = docs.stream("primary")
    assert not [e for e in primary if times["dump"] + 0.1 < e["time"] < times["refill"]]
    assert all(e["data"]["i0"] > 1000 for e in primary), "a point without beam was kept"
    _check_run(docs, _received(handle, docs), N_POINTS)


def test_gp_scan_in_one_dimension_over_energy(RE, beamlines, tmp_path):
    import yaml

    mono = beamlines["ophyd_async"].mono_energy
    engine = {"coordinates": [{"name": "energy", "low": 8950.0, "high": 9050.0, "units": "eV",
                               "velocity": 1000.0}],
              "value": "det_norm", "initial_design": {"n_points": 4}, "stop": {"max_points": 8}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump({"engine": engine}))
    velo = RE(bps.rd(mono.velocity)).plan_result
    RE(bps.mv(mono.velocity, 1000.0))
    docs = Documents()
    with serve_in_thread(tmp_path / "agent.yaml") as handle:
        client = AgentClient(handle.request_address, timeout_s=10)
        reducer = ScalarReducer(positions={"energy": "mono_energy"},
                                address=handle.measurement_address)
        try:  # no max_points: the agent's own stop condition ends the run
            RE(gp_scan([beamlines["ophyd_async"].scaler], mono, (8950, 9050), agent=client,
                       reducer=reducer), docs)
        finally:
            reducer.close()
            client.close()
            RE(bps.mv(mono.velocity, velo))
    energies = [e["data"]["mono_energy"] for e in docs.stream("primary")]
    assert len(energies) == 8 and len(set(np.round(energies, 2))) == 8
    assert all(8950 - 0.01 <= e <= 9050 + 0.01 for e in energies)
    assert len(docs.stream("proposals")) == 8
