"""Issue 13's scenario: the agent service SIGKILLed mid ``gp_scan`` (simulated IOCs over
Channel Access, ophyd-async devices) and restarted at once in the same directory, twice. The
run completes its budget with no position measured twice, no proposal id repeated, and the
plan and the service agree on what was measured (acknowledged delivery, agent.delivery)."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import numpy as np
import pytest
import yaml
from bluesky import RunEngine

from agent.client import AgentClient
from agent.delivery import MeasurementSender
from agent.reducers import ScalarReducer
from agent.wal import MeasurementLog
from plans.gp_scan import gp_scan
from tests.devices_system_helpers import connect_async_beamline
from tests.plans_helpers import BOUNDS, POSITIONS, Documents, engine_section
from tests.service_helpers import Requester, free_tcp_port, kill_group, start_service

pytestmark = pytest.mark.system

N_POINTS = 14
KILL_AFTER_PROPOSALS = (4, 9)  # kill while these proposals are being measured
KILL_DELAY_S = 0.02  # after the proposal is recorded: mid-move


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)


@pytest.fixture(scope="module")
def beamline(RE, sim_beamline):
    bl = connect_async_beamline(RE, sim_beamline.config_path)
    stage = bl.sample_stage
    velo = sim_beamline.config.motor("sample_x").velocity
    RE(bps.mv(stage.x.velocity, 50.0, stage.y.velocity, 50.0))
    RE(bps.mv(stage.x, 0.0, stage.y, 0.0, bl.scaler.preset_time, 0.01))
    yield bl
    RE(bps.mv(stage.x.velocity, velo, stage.y.velocity, velo))


class AgentKiller:
    """Document callback: at the proposals events numbered in ``at``, SIGKILLs the agent
    ``delay_s`` later (from a timer, so mid-move) and starts its successor at once."""

    def __init__(self, config, log, at, delay_s):
        self.config, self.log, self.at, self.delay_s = config, log, set(at), delay_s
        self.procs = [start_service(config, log)]
        self._proposals_descriptor = None
        self.timers: list[threading.Timer] = []

    def __call__(self, name, doc):
        if name == "descriptor" and doc["name"] == "proposals":
            self._proposals_descriptor = doc["uid"]
        elif name == "event" and doc["descriptor"] == self._proposals_descriptor \
                and doc["seq_num"] in self.at:
            timer = threading.Timer(self.delay_s, self.restart)
            timer.start()
            self.timers.append(timer)

    def restart(self):
        kill_group(self.procs[-1])
        self.procs.append(start_service(self.config, self.log))

    def close(self):
        for timer in self.timers:
            timer.join(10)
        for proc in self.procs:
            kill_group(proc)


def test_agent_killed_twice_mid_gp_scan_no_point_twice_none_lost(RE, beamline, tmp_path):
    ports = {k: free_tcp_port() for k in ("request_port", "measurement_port", "status_port")}
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"engine": engine_section(), "service": {
        **ports, "checkpoint_dir": str(tmp_path / "ck"), "status_interval_s": 0.2}}))
    address = f"tcp://127.0.0.1:{ports['request_port']}"
    killer = AgentKiller(config, tmp_path / "agent.log", KILL_AFTER_PROPOSALS, KILL_DELAY_S)
    requester = Requester(address)
    client = AgentClient(address, timeout_s=30, resend_s=0.5)
    sender = MeasurementSender(address, resend_s=0.5)
    docs = Documents()
    try:
        requester.wait_ready(killer.procs[0])
        stage = beamline.sample_stage
        reducer = ScalarReducer(positions=POSITIONS, sink=sender)
        RE(gp_scan([beamline.scaler], stage.x, BOUNDS, stage.y, BOUNDS, agent=client,
                   reducer=reducer, max_points=N_POINTS, ask_timeout_s=30), [docs, killer])
        assert sender.flush(30), f"{sender.unacknowledged} measurements not acknowledged"
        status = requester.status(timeout_s=10)
    finally:
        sender.close()
        client.close()
        requester.close()
        killer.close()
    assert len(killer.procs) == 1 + len(KILL_AFTER_PROPOSALS)  # both kills happened
    primary, proposals = docs.stream("primary"), docs.stream("proposals")
    assert len(primary) == len(proposals) == N_POINTS
    ids = [e["data"]["proposal_id"] for e in proposals]
    assert len(set(ids)) == N_POINTS and ids == sorted(ids), f"proposal ids repeat: {ids}"
    points = np.array([[e["data"][f] for f in POSITIONS.values()] for e in primary])
    assert len(np.unique(points.round(3), axis=0)) == N_POINTS, "a position measured twice"
    logged = MeasurementLog(tmp_path / "ck").read()  # what the service has, after it all
    uid = docs.start()["uid"]
    assert sorted((m.run_uid, m.seq) for m in logged) == [(uid, e["seq_num"] - 1)
                                                           for e in primary]
    assert status["n_measurements"] == N_POINTS and status["n_pending"] == 0, status
    assert sender.n_refused == sender.n_dropped == 0
    print(f"2 agent kills mid-run: {N_POINTS} points, ids {ids}, {sender.n_resent} "
          f"measurements resent, {status['service']['n_duplicates']} duplicates ignored")
