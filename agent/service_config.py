"""Configuration of the agent service: the ``service:`` and ``reducers:`` sections of an agent YAML.

The ``engine:`` section holds the engine's model settings (``agent.config.EngineConfig``
fields); its ``coordinates`` and ``value`` are optional, the default problem
(``agent.problem.ModelSettings``): plans send their own at the start of each run. Every section is
validated with pydantic and unknown keys are rejected, so a misspelt key never passes silently.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    DirectoryPath,
    Field,
    FilePath,
    PlainValidator,
    model_validator,
)

from agent.config import EngineConfig
from agent.messages import HARD_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from agent.problem import ModelSettings, as_model_settings

Port = Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CurveConfig(_Strict):
    """ZeroMQ CURVE on every socket of the service: encryption, and only clients whose public
    key is in ``authorized_clients`` can connect. ``beamagent keys DIR`` writes both."""

    server_secret_key: FilePath = Field(
        description="the server's key pair (DIR/server.key_secret from `beamagent keys DIR`)")
    authorized_clients: DirectoryPath = Field(
        description="directory of the public keys (*.key) of the clients allowed to connect "
                    "(DIR/authorized_clients)")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name
        return False


class ServiceConfig(_Strict):
    """Where the service listens, who may use it, and where it keeps its write-ahead log.

    Binding beyond loopback needs ``curve``: the service refuses to start otherwise."""

    host: str = Field(default="127.0.0.1", description="bind address; loopback unless asked")
    request_port: Port = 5580
    measurement_port: Port = 5581
    status_port: Port = 5582
    checkpoint_dir: Path | None = Field(
        default=None, description="write-ahead measurement log and engine checkpoint; None: none"
    )
    status_interval_s: float = Field(default=1.0, gt=0, description="status PUB period, s")
    fsync: bool = Field(default=False, description="fsync the log per measurement (power loss)")
    max_message_bytes: int = Field(
        default=MAX_MESSAGE_BYTES, ge=1024, le=HARD_MAX_MESSAGE_BYTES,
        description="longer requests and measurements are rejected unread (with a reply)")
    rejection_log_interval_s: float = Field(
        default=10.0, gt=0, description="log at most one rejection line per socket per interval")
    curve: CurveConfig | None = Field(
        default=None, description="CURVE keys; None: no authentication (loopback only)")
    max_pending_per_session: int | None = Field(
        default=20, ge=1, description="pending (proposed, not yet measured) points one session "
                                      "may hold; a larger ask is refused. None: no limit")
    max_sessions: int = Field(
        default=64, ge=1, description="open sessions; beyond, the least recently used one "
                                      "holding nothing is closed")
    max_loaded_sessions: int = Field(
        default=16, ge=1, description="run sessions whose engine (GP) is kept in memory; "
                                      "beyond, the least recently used idle one is unloaded "
                                      "(its measurements stay; rebuilt when used again)")
    require_session: bool = Field(
        default=False, description="refuse ask/tell/release naming no opened session (by "
                                   "default they share one anonymous session and its quota)")

    @model_validator(mode="after")
    def _curve_beyond_loopback(self) -> ServiceConfig:
        if self.curve is None and not is_loopback(self.host):
            raise ValueError(
                f"host={self.host!r}: binding beyond 127.0.0.1 needs CURVE authentication; "
                "set service.curve (server_secret_key, authorized_clients; generate them with "
                "`beamagent keys DIR`) or bind 127.0.0.1")
        return self

    def address(self, port: int) -> str:
        return f"tcp://{self.host}:{port if port else '*'}"


class ScalarReducerConfig(_Strict):
    """A scalar detector field, optionally normalised by a monitor (e.g. det / i0)."""

    kind: Literal["scalar"]
    value_name: str = "det_norm"
    detector: str = Field(description="event data key of the detector counts")
    monitor: str | None = Field(default=None, description="event data key of the monitor (I0)")
    positions: dict[str, str] = Field(min_length=1, description="coordinate -> readback data key")
    counting_statistics: bool = Field(default=True, description="Poisson variances from counts")


class ImageReducerConfig(_Strict):
    """ROI sum, centroid and sigma of a 2-D camera image."""

    kind: Literal["image"]
    value_prefix: str = "roi"
    image: str = Field(description="event data key of the 2-D image")
    roi: tuple[int, int, int, int] | None = Field(
        default=None, description="(row_start, row_stop, col_start, col_stop) pixels; None: all"
    )
    positions: dict[str, str] = Field(min_length=1)
    counting_statistics: bool = True


ReducerConfig = Annotated[ScalarReducerConfig | ImageReducerConfig, Field(discriminator="kind")]


def _engine_section(value: object) -> ModelSettings:
    if not isinstance(value, ModelSettings | EngineConfig | dict):
        raise ValueError(f"engine: expected a mapping, got {type(value).__name__}")
    return as_model_settings(value)


class AgentFileConfig(_Strict):
    """A whole agent YAML: engine (model settings, optionally a default problem), service
    and reducers."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    engine: Annotated[ModelSettings, PlainValidator(_engine_section)]
    service: ServiceConfig = ServiceConfig()
    reducers: list[ReducerConfig] = Field(default_factory=list)


def load_agent_config(path: str | Path) -> AgentFileConfig:
    """Read and validate an agent YAML. Raises pydantic.ValidationError naming the bad key."""
    with open(path) as f:
        return AgentFileConfig.model_validate(yaml.safe_load(f))
