"""agent.delivery.MeasurementSender against the real service: in a thread, and behind the
reducer process (``--acknowledged``) across an agent SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher
from bluesky.plans import grid_scan

from agent import doc_codec
from agent.config import EngineConfig
from agent.delivery import MeasurementSender
from agent.messages import Measurement
from agent.service import serve_in_thread
from agent.service_config import ServiceConfig
from tests.service_helpers import (
    ENGINE,
    Requester,
    free_tcp_port,
    kill_group,
    start_service,
    write_agent_config,
)
from tests.test_reducers_system import _wait_for_line, devices

pytestmark = pytest.mark.system


def m(seq: int, x: float = 1.0) -> Measurement:
    return Measurement(run_uid="delivery", seq=seq, positions={"x": x, "y": 0.5 * seq},
                       values={"det_norm": 1.0 + seq})


def test_measurements_sent_before_the_service_exists_arrive_once(tmp_path):
    port = free_tcp_port()
    sender = MeasurementSender(f"tcp://127.0.0.1:{port}", resend_s=0.2)
    handle = None
    try:
        for seq in range(5):
            sender(m(seq))
        sender(m(2))  # the same (run_uid, seq) again: acknowledged as a duplicate
        sender(m(9, x=99.0))  # refused by the service: counted, not resent
        assert not sender.flush(0.5) and sender.unacknowledged == 7  # nobody listens yet
        handle = serve_in_thread(EngineConfig.model_validate(ENGINE), ServiceConfig(
            request_port=port, measurement_port=0, status_port=0,
            checkpoint_dir=tmp_path / "ck"))
        assert sender.flush(10), f"{sender.unacknowledged} not acknowledged"
        status = handle.service.status()
    finally:
        sender.close()
        if handle is not None:
            handle.stop()
    assert (sender.n_sent, sender.n_acknowledged, sender.n_refused) == (7, 6, 1)
    assert status["n_measurements"] == 5 and status["service"]["n_duplicates"] >= 1
    assert status["service"]["n_rejected_requests"] >= 1
    assert "x=99.0" in " ".join(status["service"]["last_rejections"])


def reducer_process_across_agent_kill(tmp_path, flag_acknowledged: bool, before: int,
                                      during: tuple[int, int]) -> tuple[dict, str, str]:
    """``python -m agent.reducers --config ... --proxy ...`` fed by a bluesky Proxy, with
    ``--acknowledged REQUEST_ADDRESS`` if ``flag_acknowledged``, else no delivery flag: a
    before x before grid_scan, SIGKILL of the agent, a grid_scan of ``during`` points while
    it is down, restart. Returns the status once all have arrived (bounded), the reducer's
    log and the agent's request address."""
    config, ports = write_agent_config(tmp_path)
    proxy_in, proxy_out = free_tcp_port(), free_tcp_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    procs, publisher = [], None
    request = f"tcp://127.0.0.1:{ports['request_port']}"
    requester, flags = Requester(request), ["--acknowledged", request]
    log = tmp_path / "reducer.log"
    try:
        procs.append(start_service(config, tmp_path / "service.log"))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from bluesky.callbacks.zmq import Proxy; "
             f"Proxy('tcp://127.0.0.1:{proxy_in}', 'tcp://127.0.0.1:{proxy_out}').start()"],
            start_new_session=True, env=env))
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "agent.reducers", "--config", str(config), "--proxy",
                 f"tcp://127.0.0.1:{proxy_out}", *(flags if flag_acknowledged else [])],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env))
        requester.wait_ready(procs[0])
        publisher = Publisher(f"127.0.0.1:{proxy_in}", serializer=doc_codec.dumps)
        _wait_for_line(log, "run start uid=probe",
                       lambda: publisher("start", {"uid": "probe", "time": time.time()}))
        sx, sy, i0, det = devices()
        RE = RunEngine({})
        RE.subscribe(publisher)
        RE(grid_scan([det, i0], sx, -5, 5, before, sy, -5, 5, before))
        requester.wait_until(lambda s: s["n_measurements"] == before ** 2, timeout_s=20)
        kill_group(procs[0])
        RE(grid_scan([det, i0], sx, -4, 4, during[0], sy, -4, 4, during[1]))  # agent down
        procs[0] = start_service(config, tmp_path / "service.log")
        requester.wait_ready(procs[0])
        total = before ** 2 + during[0] * during[1]
        status = requester.wait_until(lambda s: s["n_measurements"] == total, timeout_s=20)
    finally:
        if publisher is not None:
            publisher.close()
        requester.close()
        for proc in reversed(procs):
            kill_group(proc)
    return status, log.read_text(), request


def test_reducer_process_delivers_acknowledged_through_an_agent_kill(tmp_path):
    """``python -m agent.reducers --acknowledged``: the agent is SIGKILLed after the first scan
    and restarted; the second scan's measurements, sent while it was down, all arrive once."""
    status, _, _ = reducer_process_across_agent_kill(tmp_path, True, 3, (2, 2))
    assert status["n_rejected"] == 0
    assert (tmp_path / "checkpoint" / "measurements.jsonl").read_text().count("\n") == 13
