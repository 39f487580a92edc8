"""Versioned messages between reducers, the agent service and plans.

Positions are in named coordinates and engineering units (the agent config names the units).
Messages travel as JSON or msgpack, never pickle.

Hostile input is bounded before it is modelled: a message longer than ``MAX_MESSAGE_BYTES``
or nested deeper than ``MAX_NESTING_DEPTH`` (arrays and objects) is refused with a
MessageError saying so, never a RecursionError (JSON's decoder and ``repr`` recurse).
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import MessageError

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # longer messages are refused unread (the service's default)
# a receiver may drop a sender whose message is longer than this (the service's libzmq cap)
HARD_MAX_MESSAGE_BYTES = 64 << 20
MAX_NESTING_DEPTH = 32  # arrays/objects within each other; real messages need 3

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def to_msgpack(self) -> bytes:
        return msgpack.packb(self.model_dump(mode="json"), use_bin_type=True)

    @classmethod
    def from_json(cls, payload: bytes | str):
        """Parse JSON. Raises MessageError naming the offending field and value."""
        try:
            data = json.loads(payload)
        except RecursionError:
            raise MessageError(too_deep(cls.__name__)) from None
        except (ValueError, TypeError) as exc:
            raise MessageError(_explain(cls, exc)) from None
        return cls._from_decoded(data)

    @classmethod
    def from_msgpack(cls, payload: bytes):
        """Parse msgpack. Raises MessageError naming the offending field and value."""
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except msgpack.StackError:
            raise MessageError(too_deep(cls.__name__)) from None
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise MessageError(_explain(cls, exc)) from None
        return cls._from_decoded(data)

    @classmethod
    def _from_decoded(cls, data):
        if nested_too_deep(data):
            raise MessageError(too_deep(cls.__name__))
        try:
            return cls.model_validate(data)
        except (ValueError, TypeError) as exc:
            raise MessageError(_explain(cls, exc)) from None


def nested_too_deep(data, limit: int = MAX_NESTING_DEPTH) -> bool:
    """True if lists/dicts in ``data`` nest more than ``limit`` levels (iterative: no
    recursion, whatever the depth)."""
    containers = dict | list | tuple
    stack = [(data, 1)] if isinstance(data, containers) else []
    while stack:
        obj, depth = stack.pop()
        if depth > limit:
            return True
        children = obj.values() if isinstance(obj, dict) else obj
        stack.extend((c, depth + 1) for c in children if isinstance(c, containers))
    return False


def too_deep(what: str, limit: int = MAX_NESTING_DEPTH) -> str:
    return f"invalid {what}: nested deeper than {limit} levels of arrays/objects"


def too_long(what: str, size: int, limit: int = MAX_MESSAGE_BYTES) -> str:
    return f"invalid {what}: {size} bytes, longer than the limit of {limit} bytes"


def _explain(cls: type, exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(map(str, e['loc'])) or '<message>'}={_short(e.get('input'))}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        return f"invalid {cls.__name__}: " + "; ".join(parts)
    return f"invalid {cls.__name__}: not decodable ({type(exc).__name__}: {_short(str(exc))})"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_measurement(payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Measurement:
    """Parse a Measurement sent as JSON (starts with ``{``) or msgpack (a map).

    Raises MessageError naming the offending field and value, or saying that the payload is
    longer than ``max_bytes`` or nested deeper than MAX_NESTING_DEPTH.
    """
    if len(payload) > max_bytes:
        raise MessageError(too_long("Measurement", len(payload), max_bytes))
    if payload.lstrip()[:1] == b"{":
        return Measurement.from_json(payload)
    return Measurement.from_msgpack(payload)


class Measurement(_Message):
    """One reduced measurement at one point.

    ``values`` holds the reduced signal(s), e.g. ``{"det_norm": 0.83}``. ``variances`` holds
    their noise variances where known (counting statistics give them). A failed measurement
    carries ``failure`` (the reason) and no values: it is data, not a crash.
    """

    run_uid: Name
    seq: int = Field(ge=0, description="sequence number of the point within the run")
    positions: dict[Name, FiniteFloat] = Field(min_length=1)
    values: dict[Name, FiniteFloat] = Field(default_factory=dict)
    variances: dict[Name, Annotated[FiniteFloat, Field(ge=0)]] | None = None
    timestamp: FiniteFloat = Field(default_factory=time.time, description="unix time, s")
    failure: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Measurement:
        if self.failure is None and not self.values:
            raise ValueError("values is empty and no failure given")
        if self.variances and not set(self.variances) <= set(self.values):
            extra = sorted(set(self.variances) - set(self.values))
            raise ValueError(f"variances for {extra} which are not in values {sorted(self.values)}")
        return self


class Proposal(_Message):
    """Points to measure next, with the decision's provenance.

    ``points`` are ordered to reduce travel; ``acquisition_values`` align with them.
    """

    proposal_id: int = Field(ge=0)
    points: list[dict[Name, FiniteFloat]]
    acquisition_function: str
    acquisition_values: list[FiniteFloat]
    phase: Literal["initial_design", "gp", "done"]
    hyperparameters: list[FiniteFloat] = Field(default_factory=list)
    n_measurements: int = Field(ge=0, description="measurements the decision was based on")
    decision_time_s: FiniteFloat = Field(ge=0)
    stop_reason: str | None = Field(default=None, description="set when phase is 'done'")


SessionUid = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                  description="a run session's uid (the uid of the run that "
                                              "started it)")]
MAX_GRID_SIDE = 100  # points per axis of a posterior grid (so at most 100 x 100)


class SessionStarted(_Message):
    """The reply to ``start_session``: which session the client now uses, and how."""

    uid: SessionUid = Field(description="the session's uid (its first run's uid)")
    run_uid: SessionUid = Field(description="the run that started or continued it")
    continued: bool = Field(description="True if the run continues an earlier session")
    runs: list[SessionUid] = Field(description="runs of the session, oldest first")
    n_measurements: int = Field(ge=0, description="measurements the session already holds")
    config: dict = Field(description="the session's engine config (model settings + problem)")


class PosteriorGrid(_Message):
    """Posterior mean and standard deviation of a session on a regular grid.

    ``axes[k]`` are the grid positions along ``coordinates[k]`` (engineering units); ``mean``
    and ``std`` are flat, C order, of shape ``[len(a) for a in axes]``: with two axes
    ``mean[i * len(axes[1]) + j]`` is at ``(axes[0][i], axes[1][j])``. Other coordinates sit
    at ``at``.
    """

    uid: SessionUid
    coordinates: list[Name] = Field(min_length=1, max_length=2)
    units: list[str]
    axes: list[list[FiniteFloat]] = Field(min_length=1, max_length=2)
    at: dict[Name, FiniteFloat] = Field(default_factory=dict)
    mean: list[FiniteFloat] = Field(max_length=MAX_GRID_SIDE ** 2)
    std: list[Annotated[FiniteFloat, Field(ge=0)]] = Field(max_length=MAX_GRID_SIDE ** 2)
    value: Name
    n_measurements: int = Field(ge=0)

    @model_validator(mode="after")
    def _shaped(self) -> PosteriorGrid:
        size = math.prod(len(a) for a in self.axes)
        if len(self.axes) != len(self.coordinates) or len(self.units) != len(self.coordinates):
            raise ValueError(f"{len(self.coordinates)} coordinates but {len(self.axes)} axes "
                             f"and {len(self.units)} units")
        if len(self.mean) != size or len(self.std) != size:
            raise ValueError(f"mean has {len(self.mean)} and std {len(self.std)} values; the "
                             f"grid {[len(a) for a in self.axes]} has {size}")
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)
