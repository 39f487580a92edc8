"""Hostile input to the agent service over real ZeroMQ sockets (in-process, serve_in_thread).

Deeply nested, undecodable and oversized requests each get an error reply naming why, are
counted in the status, log no traceback, and rejection logging is rate-limited (one line,
then a summary with the count per interval). The measurement (PULL) socket the same, minus
the reply (PUSH has none).
"""

from __future__ import annotations

import json
import logging
import time

import msgpack
import pytest
import zmq

from agent.config import EngineConfig
from agent.messages import Measurement
from agent.service import serve_in_thread
from agent.service_config import ServiceConfig
from tests.service_helpers import ENGINE, Requester

DEEP = 10_000
SERVICE_LOGGER = "agent.service"


def nested_json(depth: int, inside: bytes = b"") -> bytes:
    return b"[" * depth + inside + b"]" * depth


def nested_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\x90"  # fixarray(1) of fixarray(1) ... of []


def valid_measurement(seq: int) -> Measurement:
    return Measurement(run_uid="hostile", seq=seq, positions={"x": 1.0, "y": -2.0},
                       values={"det_norm": 0.5})


HOSTILE_REQUESTS = {
    "deep array": nested_json(DEEP),
    "deep inside an envelope": b'{"type": "release", "points": ' + nested_json(DEEP) + b"}",
    "deep within the decoder's limit": (b'{"type": "release", "request_id": 3, "points": '
                                        + nested_json(900) + b"}"),
    "deep object": b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    "not UTF-8": b"\xff\xfe\x00{\x80",
    "empty": b"",
    "msgpack": msgpack.packb({"type": "status"}),
    "10 MB": b'{"type": "status", "pad": "' + b"x" * 10_000_000 + b'"}',
}


def service_config(**overrides) -> ServiceConfig:
    return ServiceConfig(request_port=0, measurement_port=0, status_port=0,
                         status_interval_s=0.2, **overrides)


@pytest.fixture
def service():
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE), service_config())
    requester = Requester(handle.request_address)
    try:
        yield handle, requester
    finally:
        requester.close()
        handle.stop()


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize("name", list(HOSTILE_REQUESTS))
def test_hostile_request_gets_an_error_reply_and_is_counted(service, caplog, name):
    handle, requester = service
    before = requester.status()
    reply = requester.raw(HOSTILE_REQUESTS[name], timeout_s=3)
    assert reply is not None, f"{name}: no reply"
    assert reply["type"] == "error" and reply["error"].startswith("invalid request"), reply
    after = requester.status()
    assert after["n_rejected"] == before["n_rejected"] + 1
    assert after["service"]["n_rejected_requests"] == \
        before["service"]["n_rejected_requests"] + 1
    assert not tracebacks(caplog), [r.getMessage()[:200] for r in tracebacks(caplog)]
    assert len(after["service"]["last_rejections"][-1]) < 400  # the reason is bounded


def test_reasons_say_what_is_wrong(service):
    _, requester = service
    reasons = {name: requester.raw(HOSTILE_REQUESTS[name], timeout_s=3)["error"]
               for name in ("deep array", "deep within the decoder's limit", "10 MB",
                            "not UTF-8")}
    assert "nested deeper than" in reasons["deep array"], reasons
    assert "nested deeper than" in reasons["deep within the decoder's limit"], reasons
    assert "10000" in reasons["10 MB"] and "bytes" in reasons["10 MB"], reasons
    assert "not JSON" in reasons["not UTF-8"], reasons


def test_request_id_of_a_deep_request_is_echoed(service):
    _, requester = service
    payload = b'{"request_id": 42, "type": "release", "points": ' + nested_json(50) + b"}"
    reply = requester.raw(payload, timeout_s=3)
    assert reply["type"] == "error" and reply["request_id"] == 42, reply


def test_rejection_logging_is_rate_limited_with_a_count(caplog):
    handle = serve_in_thread(EngineConfig.model_validate(ENGINE),
                             service_config(rejection_log_interval_s=0.5))
    requester = Requester(handle.request_address)
    try:
        with caplog.at_level(logging.INFO, logger=SERVICE_LOGGER):
            t0 = time.monotonic()
            for _ in range(200):
                assert requester.raw(nested_json(DEEP), timeout_s=3)["type"] == "error"
            assert time.monotonic() - t0 < 0.5 * 4, "200 rejections took too long"
            time.sleep(0.8)  # one interval: the summary of what was not logged is due
            status = requester.status()
    finally:
        requester.close()
        handle.stop()
    lines = [r.getMessage() for r in caplog.records
             if r.name == SERVICE_LOGGER and "reject" in r.getMessage()]
    assert 2 <= len(lines) <= 8, lines  # 200 rejections, a handful of lines
    assert sum(_count_in(line) for line in lines) == 200, lines
    assert status["service"]["n_rejected_requests"] == 200
    assert status["service"]["n_rejections_not_logged"] >= 190
    assert not tracebacks(caplog)


def _count_in(line: str) -> int:
    """1 for a single rejection line, N for a summary 'N more ... rejected'."""
    if " more " in line:
        return int(line.split(" more ")[0].split()[-1])
    return 1


def push_and_wait(handle, requester, payloads) -> dict:
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(handle.measurement_address)
    try:
        before = requester.status()["service"]["n_received"]
        for payload in payloads:
            push.send(payload)
        return requester.wait_until(
            lambda s: s["service"]["n_received"] >= before + len(payloads), timeout_s=10)
    finally:
        push.close()


def test_hostile_measurements_are_counted_without_tracebacks(service, caplog):
    handle, requester = service
    hostile = [b'{"values": ' + nested_json(DEEP) + b"}", nested_msgpack(1000),
               nested_msgpack(DEEP), b"\xc1" * 10, b'{"run_uid": "' + b"x" * 2_000_000 + b'"}',
               b"{" * 20000]
    with caplog.at_level(logging.INFO, logger=SERVICE_LOGGER):
        status = push_and_wait(handle, requester, [*hostile, valid_measurement(0).to_json()])
    service = status["service"]
    assert service["n_rejected_measurements"] == len(hostile)
    assert service["n_accepted"] == 1
    assert not tracebacks(caplog), [r.getMessage()[:200] for r in tracebacks(caplog)]
    lines = [r.getMessage() for r in caplog.records
             if r.name == SERVICE_LOGGER and "reject" in r.getMessage()]
    assert len(lines) == 1, lines  # the first is logged; the rest wait for the summary
    reasons = " | ".join(service["last_rejections"])
    assert "nested deeper than" in reasons and "bytes" in reasons, reasons


def test_service_still_answers_after_hostile_input(service):
    handle, requester = service
    for payload in HOSTILE_REQUESTS.values():
        requester.raw(payload, timeout_s=3)
    reply = requester.request({"type": "ask", "n": 2})
    assert reply["type"] == "proposal" and len(reply["proposal"]["points"]) == 2
    assert json.loads(json.dumps(requester.status()))["n_rejected"] == len(HOSTILE_REQUESTS)
