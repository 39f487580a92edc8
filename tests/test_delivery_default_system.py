"""The default measurement delivery, ``ScalarReducer(request_address=...)`` (acknowledged,
``agent.delivery``), on real ZeroMQ sockets: across an agent SIGKILL and restart mid-scan
(in-process reducer, and the reducer process with no delivery flag), and with CURVE keys
(acknowledged and the explicit PUSH option)."""

from __future__ import annotations

import time

import pytest
from bluesky import RunEngine
from bluesky.plans import grid_scan

from agent.config import EngineConfig
from agent.delivery import MeasurementSender
from agent.reducers import MeasurementPusher, ScalarReducer
from agent.service import serve_in_thread
from agent.service_config import CurveConfig, ServiceConfig
from agent.wal import MeasurementLog
from plans.cli import main as beamagent
from tests.service_helpers import (
    ENGINE,
    Requester,
    kill_group,
    start_service,
    write_agent_config,
)
from tests.test_delivery_system import reducer_process_across_agent_kill
from tests.test_reducers_system import devices

pytestmark = pytest.mark.system

POSITIONS = {"x": "sample_x", "y": "sample_y"}


class KillAt:
    """Document callback: SIGKILLs the agent when the primary event ``seq_num`` arrives (just
    after the reducer handed that measurement to its sender: in flight), then starts the
    successor in the same checkpoint directory at once."""

    def __init__(self, config, log, seq_num: int):
        self.config, self.log, self.seq_num = config, log, seq_num
        self.procs = [start_service(config, log)]

    def __call__(self, name, doc):
        if name == "event" and doc["seq_num"] == self.seq_num:
            kill_group(self.procs[-1])
            self.procs.append(start_service(self.config, self.log))

    def close(self):
        for proc in self.procs:
            kill_group(proc)


def logged_keys(checkpoint_dir) -> tuple[list[tuple[str, int]], int]:
    """(run_uid, seq) of the service's log, without duplicates; and its number of lines."""
    lines = (checkpoint_dir / "measurements.jsonl").read_text().splitlines()
    return [(m.run_uid, m.seq) for m in MeasurementLog(checkpoint_dir).read()], len(lines)


def test_default_reducer_loses_nothing_across_an_agent_sigkill(tmp_path):
    config, ports = write_agent_config(tmp_path)
    request = f"tcp://127.0.0.1:{ports['request_port']}"
    killer = KillAt(config, tmp_path / "agent.log", seq_num=6)
    requester = Requester(request)
    reducer = ScalarReducer(positions=POSITIONS, request_address=request, resend_s=0.3)
    try:
        requester.wait_ready(killer.procs[0])
        sx, sy, i0, det = devices()
        RE = RunEngine({})
        RE.subscribe(reducer)  # before the killer: measurement 6 is sent, then the kill
        RE.subscribe(killer)
        (uid,) = RE(grid_scan([det, i0], sx, -5, 5, 4, sy, -5, 5, 4))
        assert len(killer.procs) == 2, "the agent was not killed"
        assert reducer.flush(30), f"{reducer.delivery.unacknowledged} not acknowledged"
        status = requester.wait_until(lambda s: s["n_measurements"] == 16, timeout_s=20)
    finally:
        reducer.close()
        requester.close()
        killer.close()
    keys, n_lines = logged_keys(tmp_path / "checkpoint")
    # each once (the one in flight at the kill is logged after its resend, out of order)
    assert sorted(keys) == [(uid, seq) for seq in range(16)] and n_lines == 16
    sender = reducer.delivery
    assert isinstance(sender, MeasurementSender)
    assert (sender.n_sent, sender.n_acknowledged, sender.n_refused, sender.n_dropped) == \
        (16, 16, 0, 0)
    assert status["n_rejected"] == 0
    print(f"agent SIGKILL at measurement 6 of 16: 16 logged once, {sender.n_resent} resent, "
          f"{status['service']['n_duplicates']} duplicates ignored")


def test_reducer_process_default_is_acknowledged_across_an_agent_sigkill(tmp_path):
    """``python -m agent.reducers --config ... --proxy ...`` (no delivery flag) sends to the
    config's request port, acknowledged: a scan made while the agent is down arrives once."""
    status, log, request = reducer_process_across_agent_kill(tmp_path, False, 2, (3, 2))
    assert f"{request} (acknowledged)" in log
    assert status["n_rejected"] == 0
    assert logged_keys(tmp_path / "checkpoint")[1] == 10


def test_curve_keys_work_for_both_deliveries(tmp_path):
    assert beamagent(["keys", str(tmp_path / "keys")]) == 0
    keys_dir = tmp_path / "keys"
    keys = dict(server_key=keys_dir / "server.key", client_key=keys_dir / "client.key_secret")
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE), ServiceConfig(
        request_port=0, measurement_port=0, status_port=0, checkpoint_dir=tmp_path / "ck",
        curve=CurveConfig(server_secret_key=keys_dir / "server.key_secret",
                          authorized_clients=keys_dir / "authorized_clients")))
    acknowledged = ScalarReducer(positions=POSITIONS, request_address=handle.request_address,
                                 **keys)
    push = ScalarReducer(positions=POSITIONS, address=handle.measurement_address, **keys)
    try:
        assert isinstance(push.delivery, MeasurementPusher)
        sx, sy, i0, det = devices()
        RE = RunEngine({})
        RE(grid_scan([det, i0], sx, -5, 5, 2, sy, -5, 5, 2), acknowledged)
        assert acknowledged.flush(10)
        RE(grid_scan([det, i0], sx, -4, 4, 2, sy, -4, 4, 2), push)
        wal, deadline = tmp_path / "ck" / "measurements.jsonl", time.monotonic() + 10
        while wal.read_text().count("\n") < 8 and time.monotonic() < deadline:
            time.sleep(0.05)  # PUSH has no acknowledgement: wait for the service's log
    finally:
        acknowledged.close()
        push.close()
        handle.stop()
    assert acknowledged.delivery.n_acknowledged == 4
    assert logged_keys(tmp_path / "ck")[1] == 8
