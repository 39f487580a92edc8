"""The beamline as the control system sees it: PV names, units, limits.

One YAML file describes a beamline. Its ``beamline:`` section (this module) is what devices
need and what a real beamline would also have. Its ``simulation:`` section is read only by
``sim`` (the hidden physics). Both sections are validated with pydantic and unknown keys are
rejected, so a misspelt key never passes silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
PvSuffix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:.\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotorConfig(_Strict):
    """One motor record. Positions are user coordinates in ``egu``."""

    name: Identifier = Field(description="Python name of the axis, e.g. 'sample_x'")
    pv: PvSuffix = Field(description="record name without the beamline prefix, e.g. 'SAMPLE:X'")
    description: str = Field(max_length=40, description="DESC field (40 chars, motor record)")
    egu: str = Field(default="mm", description="engineering units (EGU)")
    low_limit: float = Field(description="soft low limit LLM, in egu")
    high_limit: float = Field(description="soft high limit HLM, in egu")
    velocity: float = Field(gt=0, description="VELO, egu/s")
    acceleration_s: float = Field(default=0.05, ge=0, description="ACCL, seconds to VELO")
    precision: int = Field(default=4, ge=0, le=10, description="PREC, display digits")
    tolerance: float = Field(default=1e-3, gt=0, description="RDBD, egu: done within this")
    initial_position: float = Field(default=0.0, description="RBV at IOC start, egu")

    @model_validator(mode="after")
    def _limits_ordered(self) -> MotorConfig:
        if not self.low_limit < self.high_limit:
            raise ValueError(
                f"motor {self.name}: low_limit {self.low_limit} must be below "
                f"high_limit {self.high_limit} {self.egu}"
            )
        if not self.low_limit <= self.initial_position <= self.high_limit:
            raise ValueError(
                f"motor {self.name}: initial_position {self.initial_position} {self.egu} "
                f"outside limits [{self.low_limit}, {self.high_limit}]"
            )
        return self


class ScalerChannelConfig(_Strict):
    """One scaler channel: S<number> counts, NM<number> name."""

    name: Identifier = Field(description="NMn and the ophyd field name, e.g. 'i0'")
    number: int = Field(ge=1, le=32, description="channel index n of Sn/NMn (1 is the clock)")
    description: str = Field(max_length=40)


class ScalerConfig(_Strict):
    name: Identifier = "scaler"
    pv: PvSuffix = "SCALER1"
    clock_hz: float = Field(default=1e7, gt=0, description="FREQ, Hz of channel 1")
    channels: tuple[ScalerChannelConfig, ...]

    @model_validator(mode="after")
    def _channels_unique(self) -> ScalerConfig:
        numbers = [c.number for c in self.channels]
        names = [c.name for c in self.channels]
        if len(set(numbers)) != len(numbers) or len(set(names)) != len(names):
            raise ValueError(f"scaler channels must have unique names and numbers: {names}")
        return self


class BeamlineConfig(_Strict):
    """What the control system sees. ``prefix`` is prepended to every PV."""

    prefix: PvSuffix = "BL:"
    motors: tuple[MotorConfig, ...]
    scaler: ScalerConfig
    ring_current_pv: PvSuffix = Field(default="RING:CURRENT", description="ai, mA")
    shutter_pv: PvSuffix = Field(default="SHUTTER", description="bo command, OPEN/CLOSED")
    shutter_status_pv: PvSuffix = Field(default="SHUTTER:STATUS", description="bi, readback")

    @model_validator(mode="after")
    def _motor_names_unique(self) -> BeamlineConfig:
        names = [m.name for m in self.motors]
        if len(set(names)) != len(names):
            raise ValueError(f"motor names must be unique: {names}")
        return self

    def motor(self, name: str) -> MotorConfig:
        """The motor called ``name``. Raises KeyError naming the known motors."""
        for m in self.motors:
            if m.name == name:
                return m
        known = [m.name for m in self.motors]
        raise KeyError(f"no motor {name!r} in beamline config; known: {known}")

    def pv(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"


DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "beamline.yaml"


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping. Raises ValueError if the file is not a mapping."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at top level, got {type(data).__name__}")
    return data


def load_beamline_config(path: str | Path = DEFAULT_CONFIG) -> BeamlineConfig:
    """Validate the ``beamline:`` section of ``path``. Other top-level sections are not read here.

    Raises:
        pydantic.ValidationError: a key is unknown or a value is out of range (names the key).
        KeyError: the file has no ``beamline:`` section.
    """
    data = load_yaml(path)
    if "beamline" not in data:
        raise KeyError(f"{path}: no 'beamline:' section")
    return BeamlineConfig.model_validate(data["beamline"])
