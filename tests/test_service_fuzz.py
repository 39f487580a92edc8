"""Property-based fuzzing of the service's inputs over real sockets (hypothesis).

Every message is either accepted or rejected with a reason naming a field and a value (or
saying why it is not decodable); the rejected count in the status moves by exactly one per
rejection; the service answers afterwards.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import MessageError
from agent.messages import Measurement, decode_measurement
from tests.service_helpers import Requester, kill_group, start_service, write_agent_config

pytestmark = pytest.mark.system
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
EXPLAINED = ("=", "not JSON", "not decodable", "values is empty", "variances for",
             "unknown coordinate", "missing coordinate", "values lack")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One service subprocess for all fuzz examples; yields (requester, PUSH socket)."""
    import zmq

    tmp = tmp_path_factory.mktemp("fuzz")
    config, ports = write_agent_config(tmp, stop={"max_points": 10_000})
    proc = start_service(config, tmp / "service.log")
    requester = Requester(f"tcp://127.0.0.1:{ports['request_port']}")
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"tcp://127.0.0.1:{ports['measurement_port']}")
    try:
        requester.wait_ready(proc)
        yield requester, push
    finally:
        push.close()
        ctx.term()
        requester.close()
        kill_group(proc)


def valid_dict(seq: int) -> dict:
    return Measurement(run_uid="fuzz", seq=seq, positions={"x": 1.0, "y": -2.0},
                       values={"det_norm": 0.5}, variances={"det_norm": 0.01}
                       ).model_dump(mode="json")


finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=12)
mutations = st.sampled_from(["schema_version", "run_uid", "seq", "positions", "values",
                             "variances", "timestamp", "failure", "extra_key"])
bad_values = st.sampled_from([math.nan, math.inf, -math.inf, 2, "1", None, -1, 1e300, [],
                              {"x": math.nan}, {"x": 50.0, "y": 0.0}, {"z": 1.0},
                              {"det_norm": math.nan}, {}])


def mutate(doc: dict, field: str, value) -> dict:
    doc = dict(doc)
    doc[field] = value
    return doc


def encode(doc, as_msgpack: bool) -> bytes:
    if as_msgpack:
        return msgpack.packb(doc, use_bin_type=True)
    return json.dumps(doc).encode()  # writes NaN/Infinity as JSON extensions


def expect_outcome(live, payload: bytes) -> str | None:
    """Push one payload; check it was accepted or rejected with an explanation (returned)."""
    requester, push = live
    before = requester.status()["service"]
    push.send(payload)
    after = requester.wait_until(
        lambda s: s["service"]["n_received"] == before["n_received"] + 1)["service"]
    rejected = after["n_rejected"] - before["n_rejected"]
    accepted = (after["n_accepted"] + after["n_duplicates"]
                - before["n_accepted"] - before["n_duplicates"])
    assert rejected + accepted == 1
    try:
        decode_measurement(payload)
        locally_valid = True
    except MessageError:
        locally_valid = False
    if not locally_valid:
        assert rejected == 1, payload
    if rejected:
        reason = after["last_rejections"][-1]
        assert reason.startswith("measurement: ") and any(k in reason for k in EXPLAINED), reason
        return reason
    return None


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_measurements(live, payload):
    expect_outcome(live, payload)


@FUZZ
@given(json_values, st.booleans())
def test_random_json_and_msgpack_measurements(live, doc, as_msgpack):
    expect_outcome(live, encode(doc, as_msgpack))


@FUZZ
@given(st.integers(0, 10**6), mutations, bad_values, st.booleans())
def test_mutated_valid_measurements(live, seq, field, value, as_msgpack):
    expect_outcome(live, encode(mutate(valid_dict(seq), field, value), as_msgpack))


_fresh_seq = itertools.count()


@FUZZ
@given(finite, finite)
def test_out_of_bounds_positions_rejected_naming_the_coordinate(live, x, y):
    doc = valid_dict(next(_fresh_seq))
    doc["run_uid"] = "bounds"  # fresh keys: a repeated (run_uid, seq) is an idempotent no-op
    doc["positions"] = {"x": x, "y": y}
    reason = expect_outcome(live, encode(doc, as_msgpack=False))
    inside = -10 <= x <= 10 and -10 <= y <= 10
    assert (reason is None) == inside, reason
    if not inside:
        assert "x=" in reason or "y=" in reason, reason


@FUZZ
@given(st.one_of(st.binary(max_size=100), json_values.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda t, n: json.dumps({"type": t, "n": n}).encode(),
                           st.sampled_from(["ask", "tell", "status", "config", "release",
                                            "dance", None]),
                           st.one_of(st.integers(-5, 500), st.floats(), st.text(max_size=3)))))
def test_fuzzed_requests_get_a_reply(live, payload):
    requester, _ = live
    before = requester.status()["n_rejected"]
    reply = requester.raw(payload, timeout_s=10)
    assert reply is not None, "no reply"
    after = requester.status()["n_rejected"]
    if reply["type"] == "error":
        assert after == before + 1
        assert any(k in reply["error"] for k in ("=", "not JSON")), reply["error"]
    else:
        assert after == before and reply["type"] in ("proposal", "status", "config")


def test_service_still_answers_after_fuzzing(live):
    requester, _ = live
    reply = requester.request({"type": "ask", "n": 2})
    assert reply["type"] == "proposal" and len(reply["proposal"]["points"]) == 2
    status = requester.status()
    assert status["n_rejected"] > 50
    logged = Path(status["service"]["log"]).read_text().splitlines()
    assert len(logged) == status["service"]["n_accepted"] > 0  # write-ahead: no rejected one
