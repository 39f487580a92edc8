"""Who may use the agent service: CURVE keys on every socket, sessions and the per-session
quota of pending proposals. Real ZeroMQ sockets on loopback (service in a thread)."""

from __future__ import annotations

import json
import time

import pytest
import zmq
from pydantic import ValidationError

from agent import curve
from agent.client import AgentClient
from agent.config import EngineConfig
from agent.errors import AgentRequestError, AgentTimeoutError
from agent.messages import Measurement
from agent.service import serve_in_thread
from agent.service_config import CurveConfig, ServiceConfig
from plans.cli import main as beamagent
from tests.service_helpers import ENGINE, Requester

pytestmark = pytest.mark.system

NO_ANSWER_S = 1.0  # how long an unauthorized client waits before it gives up


def free_ports(**extra) -> ServiceConfig:
    return ServiceConfig(request_port=0, measurement_port=0, status_port=0,
                         status_interval_s=0.1, **extra)


@pytest.fixture
def keys(tmp_path):
    """Keys from ``beamagent keys``, plus a pair the service never authorized."""
    assert beamagent(["keys", str(tmp_path / "keys")]) == 0
    stranger = curve.generate_keys(tmp_path / "stranger")
    return tmp_path / "keys", stranger


@pytest.fixture
def secured(keys):
    directory, _ = keys
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE), free_ports(curve=CurveConfig(
        server_secret_key=directory / "server.key_secret",
        authorized_clients=directory / "authorized_clients")))
    yield handle
    handle.stop()


def measurement(seq: int) -> bytes:
    return Measurement(run_uid="auth", seq=seq, positions={"x": 1.0, "y": 2.0 + 0.5 * seq},
                       values={"det_norm": 1.0}).to_json()


def pusher(ctx: zmq.Context, address: str, keys_dir=None) -> zmq.Socket:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    if keys_dir is not None:
        curve.secure_client(sock, curve.load_public(keys_dir / "server.key"),
                            curve.load_pair(keys_dir / "client.key_secret"))
    sock.connect(address)
    return sock


async def test_only_a_client_with_an_authorized_key_is_answered(secured, keys):
    directory, stranger = keys
    good = AgentClient(secured.request_address, timeout_s=10, server_key=directory / "server.key",
                       client_key=directory / "client.key_secret")
    plain = AgentClient(secured.request_address, timeout_s=NO_ANSWER_S)
    wrong = AgentClient(secured.request_address, timeout_s=NO_ANSWER_S,
                        server_key=directory / "server.key",
                        client_key=stranger["client_secret"])
    try:
        assert (await good.ask(n=2)).points
        for outsider in (plain, wrong):
            t0 = time.monotonic()
            with pytest.raises(AgentTimeoutError):
                await outsider.ask(n=2)
            with pytest.raises(AgentTimeoutError):
                await outsider.tell(Measurement.from_json(measurement(9)))
            assert time.monotonic() - t0 < 4 * NO_ANSWER_S
        status = await good.status()
    finally:
        for c in (good, plain, wrong):
            c.close()
    service = status["service"]
    assert status["n_pending"] == 2 and status["n_measurements"] == 0
    assert service["n_requests"] == 3  # open, ask, status: nothing of the others
    assert service["sessions"]["n_open"] == 1


def test_measurements_and_status_need_the_key_too(secured, keys):
    directory, _ = keys
    ctx = zmq.Context()
    foreign, own = pusher(ctx, secured.measurement_address), \
        pusher(ctx, secured.measurement_address, directory)
    subscribers = []
    for keys_dir in (None, directory):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"status")
        if keys_dir is not None:
            curve.secure_client(sub, curve.load_public(keys_dir / "server.key"),
                                curve.load_pair(keys_dir / "client.key_secret"))
        sub.connect(secured.status_address)
        subscribers.append(sub)
    try:
        for seq in range(3):
            foreign.send(measurement(seq), zmq.NOBLOCK)  # queued: its handshake fails
        own.send(measurement(10))
        deadline = time.monotonic() + 10
        while secured.service.counters["accepted"] < 1:  # the keyed one arrives (bounded)
            assert time.monotonic() < deadline, "the authorized measurement never arrived"
            time.sleep(0.01)
        assert subscribers[1].poll(5000), "an authorized subscriber got no status"
        assert not subscribers[0].poll(int(NO_ANSWER_S * 1000)), "status without a key"
        counters = dict(secured.service.counters)
    finally:
        for sock in (foreign, own, *subscribers):
            sock.close()
        ctx.term()
    assert counters["received"] == counters["accepted"] == 1  # none of the foreign ones
    assert [m.seq for m in secured.engine.measurements] == [10]


def test_binding_beyond_loopback_needs_curve(keys):
    with pytest.raises(ValidationError, match=r"host='0\.0\.0\.0'.*needs CURVE"):
        ServiceConfig(host="0.0.0.0")
    with pytest.raises(ValidationError, match="host='192.168.1.5'"):
        ServiceConfig(host="192.168.1.5")
    directory, _ = keys
    ServiceConfig(host="0.0.0.0", curve=CurveConfig(  # accepted with keys
        server_secret_key=directory / "server.key_secret",
        authorized_clients=directory / "authorized_clients"))
    with pytest.raises(ValidationError, match="server_secret_key"):
        CurveConfig(server_secret_key=directory / "missing", authorized_clients=directory)


@pytest.fixture
def open_service():
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE), free_ports())
    yield handle
    handle.stop()


async def test_a_greedy_client_cannot_reserve_the_space(open_service):
    """One ask(n=100) from another client is refused, and a legitimate run still gets every
    point it asks for."""
    greedy = AgentClient(open_service.request_address, timeout_s=10)
    legit = AgentClient(open_service.request_address, timeout_s=10)
    anonymous = Requester(open_service.request_address)
    try:
        with pytest.raises(AgentRequestError, match=r"ask n=100 refused: .*"
                           r"max_pending_per_session=20"):
            await greedy.ask(n=100)
        refused = anonymous.request({"type": "ask", "n": 100})
        assert refused["type"] == "error" and refused["code"] == "quota", refused
        assert len((await greedy.ask(n=20)).points) == 20  # up to its quota, no more
        with pytest.raises(AgentRequestError, match="holds 20 pending"):
            await greedy.ask(n=1)
        seen = []
        for seq in range(30):  # the legitimate run: ask, measure, ask ...
            proposal = await legit.ask()
            assert proposal.phase != "done", proposal.stop_reason
            seen += proposal.points
            await legit.tell(Measurement(run_uid="legit", seq=seq, positions=proposal.points[0],
                                         values={"det_norm": 1.0 + 0.01 * seq}))
        status = await legit.status()
    finally:
        for c in (greedy, legit):
            c.close()
        anonymous.close()
    assert status["n_measurements"] == 30 and status["n_pending"] == 20
    assert status["service"]["sessions"]["pending"] == {greedy.session[:8]: 20}
    assert status["service"]["n_rejected_requests"] == 3  # the three refused asks


async def test_a_session_releases_only_its_own_points(open_service):
    owner = AgentClient(open_service.request_address, timeout_s=10)
    other = AgentClient(open_service.request_address, timeout_s=10)
    try:
        points = (await owner.ask(n=3)).points
        assert await other.release(points) == 0
        assert (await other.status())["n_pending"] == 3
        assert await owner.release(points[:2]) == 2
        assert (await owner.status())["n_pending"] == 1
    finally:
        owner.close()
        other.close()


def test_a_request_from_a_session_not_opened_is_refused_with_a_reason(open_service):
    requester = Requester(open_service.request_address)
    try:
        for kind in ("ask", "tell", "release", "status"):
            body = {"type": kind, "session": "never-opened-0123456789"}
            if kind == "tell":
                body["measurement"] = json.loads(measurement(0))
            if kind == "release":
                body["points"] = []
            reply = requester.request(body)
            assert reply["type"] == "error" and reply["code"] == "session_not_opened", reply
            assert "'never-op'... was not opened" in reply["error"], reply["error"]
        assert requester.request({"type": "open", "session": "short"})["type"] == "error"
        status = requester.status()
    finally:
        requester.close()
    assert status["n_measurements"] == 0 and status["n_pending"] == 0
    assert status["service"]["n_rejected_requests"] == 5


def test_require_session_refuses_anonymous_asks():
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE),
                             free_ports(require_session=True))
    requester = Requester(handle.request_address)
    try:
        reply = requester.request({"type": "ask", "n": 1})
        assert reply["code"] == "session_required" and "require_session" in reply["error"]
        token = "t" * 20
        assert requester.request({"type": "open", "session": token})["type"] == "ok"
        assert requester.request({"type": "ask", "n": 1, "session": token})["type"] == \
            "proposal"
        assert requester.status()["n_pending"] == 1  # status needs no session
    finally:
        requester.close()
        handle.stop()
