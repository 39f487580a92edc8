"""Reducers feeding a real agent service: in-process (RE.subscribe) and in a separate process
behind bluesky's zmq Proxy with the msgpack document codec (never pickle)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher
from bluesky.plans import grid_scan
from ophyd.sim import SynAxis, SynSignal

from agent import doc_codec
from agent.config import EngineConfig
from agent.reducers import ScalarReducer
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

pytestmark = pytest.mark.system


def devices():
    sx, sy = SynAxis(name="sample_x"), SynAxis(name="sample_y")
    i0 = SynSignal(name="i0", func=lambda: 2.0e5)
    det = SynSignal(name="det", func=lambda: 1000.0 + 50.0 * sx.position - 20.0 * sy.position)
    return sx, sy, i0, det


def test_in_process_reducer_feeds_the_service(tmp_path):
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE),
                             ServiceConfig(request_port=0, measurement_port=0, status_port=0,
                                           checkpoint_dir=tmp_path))
    reducer = ScalarReducer("det_norm", "det", "i0", positions={"x": "sample_x", "y": "sample_y"},
                            address=handle.measurement_address)
    requester = Requester(handle.request_address)
    try:
        sx, sy, i0, det = devices()
        RE = RunEngine({})
        RE.subscribe(reducer)
        RE(grid_scan([det, i0], sx, -5, 5, 4, sy, -5, 5, 3))
        status = requester.wait_until(lambda s: s["service"]["n_accepted"] == 12)
        assert status["n_measurements"] == 12 and status["n_rejected"] == 0
        logged = (tmp_path / "measurements.jsonl").read_text().splitlines()
        assert len(logged) == 12 and '"det_norm"' in logged[0]
    finally:
        requester.close()
        reducer.close()
        handle.stop()


def _wait_for_line(path, text: str, publish, timeout_s: float = 20.0) -> None:
    """Publish probes until ``text`` appears in the log at ``path`` (PUB/SUB slow joiner)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publish()
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} not in {path} within {timeout_s} s:\n{path.read_text()}")


def test_reducer_process_behind_bluesky_proxy_with_msgpack(tmp_path):
    config, ports = write_agent_config(tmp_path)
    proxy_in, proxy_out = free_tcp_port(), free_tcp_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    procs = []
    publisher = None
    requester = Requester(f"tcp://127.0.0.1:{ports['request_port']}")
    try:
        procs.append(start_service(config, tmp_path / "service.log"))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from bluesky.callbacks.zmq import Proxy; "
             f"Proxy('tcp://127.0.0.1:{proxy_in}', 'tcp://127.0.0.1:{proxy_out}').start()"],
            start_new_session=True, env=env))
        reducer_log = tmp_path / "reducer.log"
        with open(reducer_log, "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "agent.reducers", "--config", str(config),
                 "--proxy", f"tcp://127.0.0.1:{proxy_out}",
                 "--agent", f"tcp://127.0.0.1:{ports['measurement_port']}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env))
        requester.wait_ready(procs[0])
        publisher = Publisher(f"127.0.0.1:{proxy_in}", serializer=doc_codec.dumps)
        _wait_for_line(reducer_log, "run start uid=probe",
                       lambda: publisher("start", {"uid": "probe", "time": time.time()}))

        sx, sy, i0, det = devices()
        RE = RunEngine({})
        RE.subscribe(publisher)
        (uid,) = RE(grid_scan([det, i0], sx, -5, 5, 5, sy, -5, 5, 4))
        status = requester.wait_until(lambda s: s["service"]["n_accepted"] == 20, timeout_s=20)
        assert status["n_measurements"] == 20 and status["n_rejected"] == 0
        logged = (tmp_path / "checkpoint" / "measurements.jsonl").read_text()
        assert logged.count(uid) == 20

        publisher._socket.send(b" event \xc1not-msgpack")  # a stray message is skipped
        publisher._socket.send(b" bogus \x80")
        RE(grid_scan([det, i0], sx, -4, 4, 2, sy, -4, 4, 2))
        requester.wait_until(lambda s: s["service"]["n_accepted"] == 24, timeout_s=20)
    finally:
        if publisher is not None:
            publisher.close()
        requester.close()
        for proc in reversed(procs):
            kill_group(proc)
    assert "bad document message skipped" in reducer_log.read_text()
