"""Messages and request envelopes: round trips and explained rejections."""

from __future__ import annotations

import json
import math

import msgpack
import pytest

from agent.errors import MessageError
from agent.messages import Measurement, decode_measurement
from agent.protocol import AskRequest, TellRequest, decode_reply, encode_reply, parse_request

M = Measurement(run_uid="r", seq=3, positions={"x": 1.0}, values={"det_norm": 2.0},
                variances={"det_norm": 0.1})


def test_measurement_round_trips_json_and_msgpack():
    assert decode_measurement(M.to_json()) == M == decode_measurement(M.to_msgpack())


@pytest.mark.parametrize(("change", "named"), [
    ({"schema_version": 2}, "schema_version=2"),
    ({"seq": -1}, "seq=-1"),
    ({"values": {"det_norm": math.nan}}, "values.det_norm=nan"),
    ({"positions": {}}, "positions={}"),
    ({"bogus": 1}, "bogus=1"),
])
def test_rejections_name_field_and_value(change, named):
    doc = {**M.model_dump(mode="json"), **change}
    for payload in (json.dumps(doc).encode(), msgpack.packb(doc)):
        with pytest.raises(MessageError, match=named.replace(".", r"\.")):
            decode_measurement(payload)


def test_requests_parse_and_reject_with_reasons():
    ask = parse_request(b'{"type": "ask", "n": 3, "current_position": {"x": 1}}')
    assert isinstance(ask, AskRequest) and ask.n == 3
    tell = parse_request(json.dumps({"type": "tell", "measurement": M.model_dump(mode="json")})
                         .encode())
    assert isinstance(tell, TellRequest) and tell.measurement == M
    with pytest.raises(MessageError, match="n=0"):
        parse_request(b'{"type": "ask", "n": 0}')
    with pytest.raises(MessageError, match="'dance'"):
        parse_request(b'{"type": "dance"}')
    with pytest.raises(MessageError, match="not JSON"):
        parse_request(b"\xff")


def test_reply_envelope_has_no_nan():
    reply = decode_reply(encode_reply("status", 4, status={"v": math.nan, "l": [math.inf]}))
    assert reply == {"schema_version": 1, "type": "status", "request_id": 4,
                     "status": {"v": None, "l": [None]}}
