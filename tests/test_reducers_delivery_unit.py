"""How a reducer picks its delivery (no service: sockets only connect, nothing is sent)."""

from __future__ import annotations

import pytest

from agent.delivery import MeasurementSender
from agent.reducers import ImageReducer, MeasurementPusher, ScalarReducer

POSITIONS = {"x": "sample_x"}
NOBODY = "tcp://127.0.0.1:1"  # nothing listens: connect succeeds, sends queue


def test_request_address_builds_an_acknowledged_sender_owned_by_the_reducer():
    reducer = ScalarReducer(positions=POSITIONS, request_address=NOBODY, resend_s=0.25)
    sender = reducer.delivery
    assert isinstance(sender, MeasurementSender) and sender.resend_s == 0.25
    assert sender.address == NOBODY
    reducer.close(timeout_s=0.1)
    reducer.close()  # idempotent
    assert not sender._thread.is_alive()


def test_address_is_the_explicit_push_option_and_sink_builds_nothing():
    push = ImageReducer("cam", positions=POSITIONS, address=NOBODY, encoding="json")
    assert isinstance(push.delivery, MeasurementPusher) and push.delivery.encoding == "json"
    assert push.flush(0.0)  # PUSH: nothing to wait for
    push.close()
    got = []
    sink = ScalarReducer(positions=POSITIONS, sink=got.append)
    assert sink.delivery is None and sink.flush(0.0)
    sink.close()


@pytest.mark.parametrize("where", [
    {}, {"request_address": NOBODY, "address": NOBODY},
    {"request_address": NOBODY, "sink": print}, {"address": NOBODY, "sink": print}])
def test_exactly_one_delivery(where):
    with pytest.raises(ValueError, match="exactly one of request_address="):
        ScalarReducer(positions=POSITIONS, **where)


def test_curve_keys_need_both_and_not_with_a_sink(tmp_path):
    with pytest.raises(ValueError, match="CURVE needs both"):
        ScalarReducer(positions=POSITIONS, address=NOBODY, server_key=tmp_path / "server.key")
    with pytest.raises(ValueError, match="CURVE needs both"):
        ScalarReducer(positions=POSITIONS, request_address=NOBODY,
                      client_key=tmp_path / "client.key_secret")
    with pytest.raises(ValueError, match="not sink="):
        ScalarReducer(positions=POSITIONS, sink=print, server_key="a", client_key="b")
