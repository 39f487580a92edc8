"""The agent service as a subprocess (``python -m agent``) over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import json
import math
import threading

import pytest

from agent.client import AgentClient
from agent.errors import AgentRequestError, AgentTimeoutError
from agent.messages import Measurement
from agent.reducers import MeasurementPusher
from agent.service import serve_in_thread
from agent.service_config import ServiceConfig
from tests.devices_system_helpers import wait_until
from tests.service_helpers import (
    Requester,
    free_tcp_port,
    kill_group,
    start_service,
    write_agent_config,
)

pytestmark = pytest.mark.system


def truth(p: dict[str, float]) -> float:
    return 1.0 + math.exp(-((p["x"] - 2) ** 2 + (p["y"] + 1) ** 2) / 8.0)


@pytest.fixture
def service(tmp_path):
    """A running service subprocess; yields (proc, addresses, config path, log)."""
    config, ports = write_agent_config(tmp_path, stop={"max_points": 24})
    log = tmp_path / "service.log"
    procs = []

    def start():
        proc = start_service(config, log)
        procs.append(proc)
        return proc

    addresses = {k: f"tcp://127.0.0.1:{v}" for k, v in ports.items()}
    yield start, addresses, log
    for proc in procs:
        kill_group(proc)


def started_client(service) -> AgentClient:
    """Start the service, wait until it answers, and return a client of it."""
    start, addr, _ = service
    proc = start()
    requester = Requester(addr["request_port"])
    try:
        requester.wait_ready(proc)
    finally:
        requester.close()
    return AgentClient(addr["request_port"], timeout_s=10)


async def test_ingest_propose_cycles_until_done(service):
    _, addr, log = service
    client = started_client(service)
    push = MeasurementPusher(addr["measurement_port"])
    seen, seq, phases = set(), 0, []
    try:
        config = await client.config()
        assert [c["name"] for c in config["coordinates"]] == ["x", "y"]
        for _ in range(30):
            proposal = await client.ask(n=3, current_position={"x": 0.0, "y": 0.0})
            phases.append(proposal.phase)
            if proposal.phase == "done":
                break
            for point in proposal.points:
                assert -10 <= point["x"] <= 10 and -10 <= point["y"] <= 10
                key = (round(point["x"], 6), round(point["y"], 6))
                assert key not in seen, f"re-proposed {point}"
                seen.add(key)
                push(Measurement(run_uid="cycle", seq=seq, positions=point,
                                 values={"det_norm": truth(point)},
                                 variances={"det_norm": 1e-4}))
                seq += 1
            # the next ask must see these measurements: wait until ingested (bounded)
            requester = Requester(addr["request_port"])
            try:
                requester.wait_until(lambda s, n=seq: s["service"]["n_accepted"] == n)
            finally:
                requester.close()
        status = await client.status()
    finally:
        client.close()
        push.close()
    assert phases[0] == "initial_design" and "gp" in phases and phases[-1] == "done"
    assert status["n_measurements"] == 24 and status["n_rejected"] == 0
    assert status["last_proposal"] is not None
    assert (log.parent / "checkpoint" / "measurements.jsonl").read_text().count("\n") == 24


async def test_bad_ask_gets_an_error_envelope_and_is_counted(service):
    client = started_client(service)
    try:
        with pytest.raises(AgentRequestError, match="x=99"):
            await client.ask(current_position={"x": 99.0, "y": 0.0})
        with pytest.raises(AgentRequestError, match="current_position"):
            await client.ask(current_position={"z": 1.0})
        status = await client.status()
        assert status["n_rejected"] == 2
        assert (await client.ask()).points  # still serving
    finally:
        client.close()


async def test_released_proposals_stop_being_pending(service):
    client = started_client(service)
    try:
        points = (await client.ask(n=3)).points
        assert (await client.status())["n_pending"] == 3
        assert await client.release(points[:2]) == 2
        assert (await client.status())["n_pending"] == 1
        assert await client.release(points[:2]) == 0  # already released: nothing to do
        with pytest.raises(AgentRequestError, match="x=99"):
            await client.release([{"x": 99.0, "y": 0.0}])
        status = await client.status()
        assert status["n_pending"] == 1 and status["n_rejected"] == 1
    finally:
        client.close()


def test_killed_service_restarts_with_nothing_lost(service):
    start, addr, _ = service
    proc = start()
    requester = Requester(addr["request_port"])
    push = MeasurementPusher(addr["measurement_port"], encoding="json")
    try:
        requester.wait_ready(proc)
        n = 20
        for i in range(n):
            point = {"x": -9.0 + 0.9 * i, "y": 5.0 - 0.4 * i}
            failure = "detector saturated" if i == 7 else None
            push(Measurement(run_uid="kill", seq=i, positions=point, failure=failure,
                             values={} if failure else {"det_norm": truth(point)}))
        before = requester.wait_until(lambda s: s["service"]["n_accepted"] == n)
        proposal = requester.request({"type": "ask", "n": 2})
        assert proposal["type"] == "proposal"
        kill_group(proc)  # SIGKILL: no chance to clean up

        proc = start()
        after = requester.wait_ready(proc)
    finally:
        push.close()
        requester.close()
    assert after["service"]["n_recovered"] == n
    assert (after["n_measurements"], after["n_failed"]) == (before["n_measurements"],
                                                            before["n_failed"]) == (n - 1, 1)


async def test_client_times_out_without_service_then_recovers():
    from agent.service import serve_in_thread
    from agent.service_config import ServiceConfig
    from tests.service_helpers import ENGINE

    port = free_tcp_port()
    address = f"tcp://127.0.0.1:{port}"
    client = AgentClient(address, timeout_s=0.3)
    try:
        with pytest.raises(AgentTimeoutError, match=rf"{address}.*0\.3 s") as info:
            await client.ask()
        assert isinstance(info.value, TimeoutError)
        from agent.config import EngineConfig

        handle = serve_in_thread(EngineConfig.model_validate(ENGINE),
                                 ServiceConfig(request_port=port, measurement_port=0,
                                               status_port=0))
        try:
            client.timeout_s = 10
            assert (await client.ask()).phase == "initial_design"  # socket was reset
        finally:
            handle.stop()
    finally:
        client.close()


def test_status_is_published_and_sigterm_stops_cleanly(service):
    import signal

    import zmq

    start, addr, log = service
    proc = start()
    requester = Requester(addr["request_port"])
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.connect(addr["status_port"])
    try:
        requester.wait_ready(proc)
        assert sub.poll(10_000), "no status published within 10 s"
        topic, payload = sub.recv_multipart()
        status = json.loads(payload)["status"]
        assert topic == b"status" and {"n_measurements", "n_rejected", "hyperparameters",
                                       "training", "last_proposal"} <= set(status)
    finally:
        sub.close()
        ctx.term()
        requester.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert "stopped cleanly" in log.read_text()


def test_a_measurement_is_logged_before_the_engine_models_it(tmp_path):
    """In-process service: the engine's tell is held; the log already has the measurement."""
    config, _ = write_agent_config(tmp_path)
    handle = serve_in_thread(config, ServiceConfig(request_port=0, measurement_port=0,
                                                   status_port=0, checkpoint_dir=tmp_path / "ck"))
    held, tell = threading.Event(), handle.engine.tell
    handle.engine.tell = lambda m: (held.wait(10), tell(m))
    push = MeasurementPusher(handle.measurement_address)
    try:
        push(Measurement(run_uid="wal", seq=0, positions={"x": 1.0, "y": 2.0},
                         values={"det_norm": 1.5}))
        log = tmp_path / "ck" / "measurements.jsonl"
        wait_until(lambda: log.exists() and log.read_text(), 10, "the logged measurement")
        assert json.loads(log.read_text())["seq"] == 0  # logged while the engine still waits
        assert handle.engine.status()["n_measurements"] == 0
        held.set()
        wait_until(lambda: handle.engine.status()["n_measurements"] == 1, 10,
                   "the engine to model the measurement")
    finally:
        held.set()
        push.close()
        handle.stop()
