"""The ``simulation:`` section of the beamline YAML: the hidden physics only ``sim`` reads.

``load_config(path)`` validates the whole file: ``beamline:`` with
:class:`configs.schema.BeamlineConfig` and ``simulation:`` with :class:`SimulationConfig`.
Unknown keys are rejected (pydantic ``extra="forbid"``), so a misspelt key never passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import DEFAULT_BEAMLINE
from configs.schema import BeamlineConfig, load_yaml
from sim.errors import SimConfigError

SampleName = Literal["particles", "domains", "phase_boundary", "xas"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StallConfig(_Strict):
    """A motor that stops short: inside ``regions`` (user egu) or with ``probability`` per move.

    The put still completes and DMOV returns to 1, but RBV is not at the target.
    """

    regions: tuple[tuple[float, float], ...] = Field(
        default=(), description="[low, high] user-coordinate intervals the motor cannot enter"
    )
    probability: float = Field(default=0.0, ge=0, le=1, description="chance a move stops short")
    shortfall_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="fraction of a random stall's move that is lost"
    )

    @model_validator(mode="after")
    def _regions_ordered(self) -> StallConfig:
        for lo, hi in self.regions:
            if not lo < hi:
                raise ValueError(f"stall region [{lo}, {hi}]: low must be below high")
        return self


class MotorSimConfig(_Strict):
    """Per-motor imperfections. Defaults make an ideal motor."""

    backlash_egu: float = Field(default=0.0, ge=0, description="slack between motor and load, egu")
    jitter_egu: float = Field(default=0.0, ge=0, description="RBV noise standard deviation, egu")
    stall: StallConfig = StallConfig()
    retries: int = Field(default=3, ge=0, le=10, description="RTRY: encoder-corrected retries")


class FluxConfig(_Strict):
    """Count rates at nominal ring current with the shutter open (counts per second)."""

    i0_cps: float = Field(default=1.0e6, gt=0, description="I0 monitor rate")
    det_cps: float = Field(default=2.0e5, gt=0, description="detector rate at signal 1.0")
    dark_cps: float = Field(default=5.0, ge=0, description="dark-count rate of every channel")


class RingEvent(_Strict):
    at_s: float = Field(ge=0, description="seconds after IOC start")
    action: Literal["dump", "refill"]


class RingConfig(_Strict):
    nominal_ma: float = Field(default=500.0, gt=0, description="fill current, mA")
    lifetime_h: float = Field(default=10.0, gt=0, description="beam lifetime (1/e), hours")
    update_period_s: float = Field(default=0.2, gt=0, le=10, description="RING:CURRENT post period")
    schedule: tuple[RingEvent, ...] = ()


class ShutterConfig(_Strict):
    initially_open: bool = True
    delay_s: float = Field(default=0.05, ge=0, le=5, description="STATUS lag after a command")


class BeamAxesConfig(_Strict):
    """Which motors place the beam on the sample (names from ``beamline.motors``)."""

    x_motor: str = "sample_x"
    y_motor: str = "sample_y"
    energy_motor: str = "mono_energy"


class OpticsSimConfig(_Strict):
    """Hidden state of the optics train (``sim.optics``); used when the beamline has optics.

    At start-up every optics motor sits at the hidden optimum (found inside the motors' soft
    limits by :func:`sim.optics.scoring.find_optimum`) plus, per DOF, a uniform offset of up
    to ``misalignment_fraction`` of its range (re-drawn until some beam is on the camera).
    """

    variant: Literal["standard", "hard"] = Field(
        default="standard",
        description="hard: two-actuator VKB bender with coma, mirror slope errors (OPTICS.md)")
    misalignment_fraction: float = Field(
        default=0.0, ge=0, le=0.5, description="start-up misalignment, fraction of each range")
    drift_dof: str = Field(default="dcm.pitch", description="DOF key that drifts, e.g. dcm.pitch")
    drift_per_hour: float = Field(default=0.0, description="drift rate, DOF units per hour")
    counts_per_photon: float = Field(
        default=1.0e-5, gt=0, description="camera counts per photon (attenuators x gain)")
    background_cps: float = Field(default=10.0, ge=0, description="camera counts/s/pixel")
    centroid_threshold: float = Field(
        default=5.0, ge=0, description="Stats1:CentroidThreshold at start-up, counts")


class AutosaveConfig(_Strict):
    """Save motor positions/settings and the scaler's TP to ``path`` and restore them on start
    (``sim.autosave``), as EPICS autosave does. A relative path is taken from the working
    directory of the simulator."""

    path: Path = Field(description="the autosave JSON file")
    period_s: float = Field(default=1.0, gt=0, le=3600, description="save period, s")


class SimulationConfig(_Strict):
    """The ``simulation:`` section. Every field has a default, so the section may be omitted."""

    seed: int = Field(default=0, ge=0, description="seeds the sample geometry and the noise")
    sample: SampleName = "particles"
    tick_s: float = Field(default=0.005, gt=0, le=0.1, description="motion update period, s")
    flux: FluxConfig = FluxConfig()
    ring: RingConfig = RingConfig()
    shutter: ShutterConfig = ShutterConfig()
    beam: BeamAxesConfig = BeamAxesConfig()
    motors: dict[str, MotorSimConfig] = Field(default_factory=dict)
    optics: OpticsSimConfig = OpticsSimConfig()
    autosave: AutosaveConfig | None = Field(
        default=None, description="None (default): a restart starts from the config")

    def motor(self, name: str) -> MotorSimConfig:
        """Imperfections of motor ``name`` (ideal if not listed)."""
        return self.motors.get(name, MotorSimConfig())


class FullConfig(_Strict):
    """Both sections of a beamline YAML, cross-checked."""

    beamline: BeamlineConfig
    simulation: SimulationConfig = SimulationConfig()

    @model_validator(mode="after")
    def _motors_known(self) -> FullConfig:
        known = {m.name for m in self.beamline.motors}
        for name in self.simulation.motors:
            if name not in known:
                raise ValueError(f"simulation.motors.{name}: no such motor; known: {sorted(known)}")
        for field, name in self.simulation.beam:
            if name not in known:
                raise ValueError(f"simulation.beam.{field}={name!r}: no such motor")
        return self


def load_config(path: str | Path = DEFAULT_BEAMLINE, *, seed: int | None = None,
                misalignment: float | None = None,
                autosave: str | Path | None = None) -> FullConfig:
    """Validate a whole beamline YAML; ``seed`` overrides ``simulation.seed``,
    ``misalignment`` overrides ``simulation.optics.misalignment_fraction`` and ``autosave``
    overrides ``simulation.autosave.path`` (turning autosave on).

    Raises:
        SimConfigError: a key is unknown or a value is invalid (the message names it).
    """
    try:
        data = load_yaml(path)
        full = FullConfig.model_validate(data)
    except (ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        raise SimConfigError(f"{path}: {exc}") from exc
    data.setdefault("simulation", {})
    if seed is not None:
        data["simulation"]["seed"] = seed
    if misalignment is not None:
        data["simulation"].setdefault("optics", {})["misalignment_fraction"] = misalignment
    if autosave is not None:
        section = data["simulation"].get("autosave") or {}
        data["simulation"]["autosave"] = {**section, "path": str(autosave)}
    if seed is not None or misalignment is not None or autosave is not None:
        try:  # re-validated, so an override is checked like the file
            full = FullConfig.model_validate(data)
        except ValueError as exc:
            raise SimConfigError(f"{path} with overrides: {exc}") from exc
    return full
