"""The agent's request/reply wire protocol (JSON envelopes over ZeroMQ ROUTER/DEALER).

Requests (one JSON object per message, ``schema_version`` 1):

- ``{"type": "ask", "n": 1, "current_position": {"x": 0.0}, "request_id": 7}``
- ``{"type": "tell", "measurement": {...Measurement...}, "request_id": 8}``
- ``{"type": "status", "request_id": 9}``
- ``{"type": "config", "request_id": 10}``
- ``{"type": "release", "points": [{"x": 0.5}], "request_id": 11}``: proposals that will
  never be measured (a run aborted between ask and measurement) stop being pending
- ``{"type": "open", "session": "3f9c...", "request_id": 1}``: open a session (idempotent)
- ``{"type": "start_session", "session": "3f9c...", "uid": RUN_UID, "problem":
  {"coordinates": [{"name": "x", "low": -10, "high": 10, "units": "mm", "velocity": 5}],
  "value": "det_norm"}, "continue_session": null}`` (the problem may carry the run's
  ``budget``, ``{"max_points": 100, "max_time_s": 600}``): start the *run session* ``uid`` (one
  engine, its own measurements) for the run's problem, or continue the earlier run session
  ``continue_session`` with this run; the client session is bound to it from then on (its
  asks and releases go there; measurements go to the run session of their ``run_uid``).
  Reply ``session`` with ``started`` (``agent.messages.SessionStarted``)
- ``{"type": "posterior", "uid": null, "shape": [50, 50], "coordinates": null, "at": null}``:
  posterior mean and std of a run session (default: the one the client session is bound to)
  on a grid of at most MAX_GRID_SIDE points per axis, one or two axes. Reply ``posterior``
  with ``grid`` (``agent.messages.PosteriorGrid``, flat JSON lists)

Any request may carry ``"session": TOKEN`` (16 to 128 characters of ``[A-Za-z0-9_-]``),
naming a session opened before; one that was not opened is refused (``agent.sessions``
explains sessions, the per-session quota and why asks resent with the same request id are
answered with the same proposal). A request naming none belongs to the anonymous session.

Replies echo ``request_id`` and carry ``type`` "proposal", "ok", "status", "config",
"session", "posterior" or "error" (with ``error``: a reason naming the field and the
value; and ``code`` where a client may act on it: ``session_not_opened``,
``session_required``, ``quota``, ``sessions_full``, ``no_run_session``,
``problem_mismatch``, ``no_model``).
Never pickle.

A request longer than ``max_bytes`` (``agent.messages.MAX_MESSAGE_BYTES`` by default) or
nested deeper than ``agent.messages.MAX_NESTING_DEPTH`` is refused with a reason saying so.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.errors import MessageError
from agent.messages import (
    MAX_GRID_SIDE,
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    FiniteFloat,
    Measurement,
    Name,
    SessionUid,
    nested_too_deep,
    too_deep,
    too_long,
)
from agent.problem import Problem

MAX_BATCH = 100
SessionToken = Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: int = Field(default=0, ge=0)
    session: SessionToken | None = Field(default=None, description="an opened session")


class OpenRequest(_Request):
    """Open the session named ``session`` (required here); opening it again is a no-op."""

    type: Literal["open"]
    session: SessionToken


class AskRequest(_Request):
    """Ask for the next ``n`` points; ``current_position`` (engineering units) for travel cost."""

    type: Literal["ask"]
    n: int = Field(default=1, ge=1, le=MAX_BATCH)
    current_position: dict[Name, FiniteFloat] | None = None


class TellRequest(_Request):
    """Hand one measurement to the engine and get an acknowledgement (the direct path)."""

    type: Literal["tell"]
    measurement: Measurement


class StatusRequest(_Request):
    type: Literal["status"]


class ConfigRequest(_Request):
    type: Literal["config"]


class ReleaseRequest(_Request):
    """Proposed points, in engineering units, that will never be measured."""

    type: Literal["release"]
    points: list[dict[Name, FiniteFloat]] = Field(max_length=MAX_BATCH)


class StartSessionRequest(_Request):
    """Start the run session ``uid`` for ``problem``, or continue ``continue_session`` (an
    earlier run session's uid) with the run ``uid``; binds the client session to it."""

    type: Literal["start_session"]
    session: SessionToken
    uid: SessionUid = Field(description="the run's uid (its start document's)")
    problem: Problem
    continue_session: SessionUid | None = Field(
        default=None, description="uid of an earlier run session to continue; None starts a "
                                  "new one: no other session's data is used")


GridSide = Annotated[int, Field(ge=2, le=MAX_GRID_SIDE)]


class PosteriorRequest(_Request):
    """Posterior mean and std on a regular grid over one or two coordinates."""

    type: Literal["posterior"]
    uid: SessionUid | None = Field(
        default=None, description="run session; None: the one this client session is bound "
                                  "to, else the default problem's")
    shape: list[GridSide] = Field(min_length=1, max_length=2,
                                  description=f"points per axis, 2 to {MAX_GRID_SIDE}")
    coordinates: list[Name] | None = Field(
        default=None, min_length=1, max_length=2,
        description="coordinates along the axes; None: the first len(shape)")
    at: dict[Name, FiniteFloat] | None = Field(
        default=None, description="positions of the other coordinates; None: mid-range")


Request = Annotated[
    AskRequest | TellRequest | StatusRequest | ConfigRequest | ReleaseRequest | OpenRequest
    | StartSessionRequest | PosteriorRequest,
    Field(discriminator="type"),
]
_REQUEST = TypeAdapter(Request)


def parse_request(payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> _Request:
    """Decode one request. Raises MessageError naming the offending field and value (or the
    size or nesting limit it breaks)."""
    if len(payload) > max_bytes:
        raise MessageError(too_long("request", len(payload), max_bytes))
    try:
        data = json.loads(payload)
    except RecursionError:
        raise MessageError(too_deep("request")) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"invalid request: not JSON ({_short(str(exc), 160)})") from None
    if nested_too_deep(data):
        raise MessageError(too_deep("request"))
    try:
        return _REQUEST.validate_python(data)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(map(str, e['loc'])) or '<request>'}={_short(e.get('input'))}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        raise MessageError("invalid request: " + "; ".join(parts)) from None


def request_id_of(payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> int:
    """Best-effort request_id of a (possibly invalid) request, so errors can be matched.

    0 if there is none, or the payload is too long or too deeply nested to decode."""
    if len(payload) > max_bytes:
        return 0
    try:
        rid = json.loads(payload).get("request_id", 0)
        return rid if isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0 else 0
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return 0


def encode_reply(kind: str, request_id: int, **body: Any) -> bytes:
    """One reply envelope as JSON bytes. Non-finite floats become null (JSON has no NaN)."""
    envelope = {"schema_version": SCHEMA_VERSION, "type": kind, "request_id": request_id, **body}
    return json.dumps(_finite(envelope), allow_nan=False).encode()


def decode_reply(payload: bytes) -> dict[str, Any]:
    """Parse a reply envelope. Raises MessageError if it is not one."""
    try:
        reply = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"invalid reply: not JSON ({exc})") from None
    if not isinstance(reply, dict) or "type" not in reply:
        raise MessageError(f"invalid reply: no 'type' in {_short(reply)}")
    return reply


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _finite(obj.tolist())
    return obj


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
