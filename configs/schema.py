"""The beamline as the control system sees it: a list of elements with PV names, units, limits.

One YAML file describes a beamline. Its ``beamline:`` section (this module) is what devices
need and what a real beamline would also have. Its ``simulation:`` section is read only by
``sim`` (the hidden physics). Both are validated with pydantic and unknown keys are rejected,
so a misspelt key never passes silently.

``beamline.elements`` lists the elements from source to sample, each with a ``kind``:

=============  ==================================================  ============================
kind           what                                                motor roles
=============  ==================================================  ============================
``motor``      one motor record (e.g. the mono energy)             --
``stage``      a sample stage                                      x, y, z
``dcm``        double-crystal monochromator, second crystal        pitch, roll
``slits``      one plane of a slit pair, served as soft motors     center, gap
``kb_mirror``  a Kirkpatrick-Baez mirror                           pitch, bender, bender_us,
                                                                   bender_ds, height, roll
``scaler``     a synApps scaler record                             --
``camera``     an areaDetector camera with an NDStats plugin       --
=============  ==================================================  ============================

Devices (both flavours) and the simulator are built from this list; adding an element of a
known kind is a YAML edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import DEFAULT_BEAMLINE

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
PvSuffix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:.\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotorConfig(_Strict):
    """One motor record. Positions are user coordinates in ``egu``."""

    name: Identifier = Field(description="Python name of the axis, e.g. 'sample_x'")
    role: Identifier | None = Field(default=None, description="role in its element, e.g. 'x'")
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

    @property
    def span(self) -> float:
        """high_limit - low_limit, egu."""
        return self.high_limit - self.low_limit


class MotorElementConfig(MotorConfig):
    """An element that is one motor record (``kind: motor``)."""

    kind: Literal["motor"]

    @property
    def motors(self) -> tuple[MotorConfig, ...]:
        return (self,)


class MotorGroupConfig(_Strict):
    """An element moved by several motor records, each with a ``role`` of its kind."""

    ROLES: ClassVar[dict[str, frozenset[str]]] = {
        "stage": frozenset({"x", "y", "z"}),
        "dcm": frozenset({"pitch", "roll"}),
        "slits": frozenset({"center", "gap"}),
        "kb_mirror": frozenset({"pitch", "bender", "bender_us", "bender_ds", "height", "roll"}),
    }

    kind: Literal["stage", "dcm", "slits", "kb_mirror"]
    name: Identifier = Field(description="Python name of the element, e.g. 'vkb'")
    description: str = Field(default="", max_length=60)
    motors: tuple[MotorConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _roles_known(self) -> MotorGroupConfig:
        allowed = self.ROLES[self.kind]
        roles = [m.role for m in self.motors]
        for motor in self.motors:
            if motor.role not in allowed:
                raise ValueError(f"{self.kind} {self.name}: motor {motor.name} has role "
                                 f"{motor.role!r}; a {self.kind} has roles {sorted(allowed)}")
        if len(set(roles)) != len(roles):
            raise ValueError(f"{self.kind} {self.name}: roles must be unique, got {roles}")
        return self

    def motor(self, role: str) -> MotorConfig:
        """The motor with ``role``. Raises KeyError naming the roles present."""
        for m in self.motors:
            if m.role == role:
                return m
        raise KeyError(f"{self.name} has no {role!r} motor; roles: {[m.role for m in self.motors]}")


class ScalerChannelConfig(_Strict):
    """One scaler channel: S<number> counts, NM<number> name."""

    name: Identifier = Field(description="NMn and the ophyd field name, e.g. 'i0'")
    number: int = Field(ge=1, le=32, description="channel index n of Sn/NMn (1 is the clock)")
    description: str = Field(max_length=40)
    hinted: bool = Field(default=True, description="named in the descriptor's hints, so "
                         "BestEffortCallback plots it and exports default to it; a monitor "
                         "such as i0 usually is not (each hinted field is one live plot "
                         "redrawn per event). The clock (channel 1) never is")


class ScalerConfig(_Strict):
    """A synApps scaler record (``kind: scaler``)."""

    kind: Literal["scaler"] = "scaler"
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


class CameraConfig(_Strict):
    """An areaDetector camera: driver ``{pv}cam1:``, image ``{pv}image1:``, NDStats
    ``{pv}Stats1:`` (areaDetector's default plugin names)."""

    kind: Literal["camera"]
    name: Identifier = "beam_camera"
    pv: PvSuffix = Field(default="CAM1:", description="areaDetector prefix $(P), e.g. 'CAM1:'")
    description: str = Field(default="", max_length=60)
    size_x: int = Field(default=320, ge=8, le=4096, description="ArraySizeX_RBV, pixels")
    size_y: int = Field(default=256, ge=8, le=4096, description="ArraySizeY_RBV, pixels")
    pixel_um: float = Field(default=0.65, gt=0, description="pixel pitch at the sample, um")
    max_count: int = Field(default=4095, ge=1, description="saturation value (12-bit: 4095)")
    default_exposure_s: float = Field(default=0.01, gt=0, description="AcquireTime at start, s")

    @property
    def array_length(self) -> int:
        """Elements of ``image1:ArrayData`` (size_x * size_y)."""
        return self.size_x * self.size_y


Element = Annotated[MotorElementConfig | MotorGroupConfig | ScalerConfig | CameraConfig,
                    Field(discriminator="kind")]


class BeamlineConfig(_Strict):
    """What the control system sees. ``prefix`` is prepended to every PV."""

    prefix: PvSuffix = "BL:"
    elements: tuple[Element, ...] = Field(min_length=1)
    ring_current_pv: PvSuffix = Field(default="RING:CURRENT", description="ai, mA")
    shutter_pv: PvSuffix = Field(default="SHUTTER", description="bo command, OPEN/CLOSED")
    shutter_status_pv: PvSuffix = Field(default="SHUTTER:STATUS", description="bi, readback")

    @model_validator(mode="after")
    def _names_unique(self) -> BeamlineConfig:
        names = [e.name for e in self.elements] + [m.name for m in self.motors
                                                    if not isinstance(m, MotorElementConfig)]
        if len(set(names)) != len(names):
            raise ValueError(f"element and motor names must be unique: {names}")
        if len(self.of_kind("scaler")) != 1:
            raise ValueError("a beamline needs exactly one scaler element")
        return self

    @property
    def motors(self) -> tuple[MotorConfig, ...]:
        """Every motor record, in element order."""
        return tuple(m for e in self.elements if hasattr(e, "motors") for m in e.motors)

    @property
    def scaler(self) -> ScalerConfig:
        return self.of_kind("scaler")[0]

    def of_kind(self, *kinds: str) -> tuple:
        """Elements whose kind is one of ``kinds``, in beamline order."""
        return tuple(e for e in self.elements if e.kind in kinds)

    def element(self, name: str):
        """The element called ``name``. Raises KeyError naming the known elements."""
        for e in self.elements:
            if e.name == name:
                return e
        raise KeyError(f"no element {name!r} in beamline config; "
                       f"known: {[e.name for e in self.elements]}")

    def motor(self, name: str) -> MotorConfig:
        """The motor called ``name``. Raises KeyError naming the known motors."""
        for m in self.motors:
            if m.name == name:
                return m
        known = [m.name for m in self.motors]
        raise KeyError(f"no motor {name!r} in beamline config; known: {known}")

    def pv(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping. Raises ValueError if the file is not a mapping."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at top level, got {type(data).__name__}")
    return data


def load_beamline_config(path: str | Path | None = None) -> BeamlineConfig:
    """Validate the ``beamline:`` section of ``path`` (default: the shipped beamline.yaml).
    Other top-level sections are not read here.

    Raises:
        pydantic.ValidationError: a key is unknown or a value is out of range (names the key).
        KeyError: the file has no ``beamline:`` section.
    """
    path = DEFAULT_BEAMLINE if path is None else path
    data = load_yaml(path)
    if "beamline" not in data:
        raise KeyError(f"{path}: no 'beamline:' section")
    return BeamlineConfig.model_validate(data["beamline"])
