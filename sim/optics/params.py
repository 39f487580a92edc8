"""Parameters of the Gaussian-beam optics train (OPTICS.md layout), validated by pydantic.

Lengths in the config are in the units named by each field (m, um, urad, keV); the model
converts to SI internally. Unknown keys are rejected (``extra="forbid"``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.optics.dofs import dof_keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceParams(_Strict):
    """Undulator source (rms sizes and divergences) and its flux in the mono bandwidth."""

    sigma_x_um: float = Field(default=50.0, gt=0, description="horizontal rms size, um")
    sigma_y_um: float = Field(default=15.0, gt=0, description="vertical rms size, um")
    sigma_xp_urad: float = Field(default=10.0, gt=0, description="horizontal rms divergence")
    sigma_yp_urad: float = Field(default=6.0, gt=0, description="vertical rms divergence, urad")
    flux_ph_s: float = Field(default=1.0e12, gt=0, description="photons/s through the DCM")
    energy_kev: float = Field(default=10.0, ge=8.0, le=12.0, description="photon energy, keV")


class DcmParams(_Strict):
    z_m: float = Field(default=20.0, gt=0, description="distance from the source, m")


class SlitParams(_Strict):
    z_m: float = Field(default=25.0, gt=0, description="distance from the source, m")


class MirrorParams(_Strict):
    """A bendable KB mirror: nominal grazing angle, length, design distances and bender.

    Bender calibration (APS AutoFocus): ``1/q = P0 * position + P1`` with ``P0 =
    power_per_percent`` and ``P1`` such that the bender's aligned position (its DOF offset)
    gives ``1/q = 1/q_m``.
    """

    z_m: float = Field(gt=0, description="distance from the source, m")
    length_m: float = Field(gt=0, description="mirror length, m")
    theta_mrad: float = Field(default=3.0, gt=0, description="nominal grazing angle, mrad")
    p_m: float = Field(gt=0, description="design object distance (source or slit), m")
    q_m: float = Field(gt=0, description="design image distance, m")
    power_per_percent: float = Field(gt=0, description="bender P0, 1/m per %")
    slope_error_urad: float = Field(default=0.0, ge=0, description="rms slope error, urad")
    coma_per_percent: float = Field(
        default=0.0, ge=0,
        description="hard VKB: cubic figure coefficient a3 (1/m^2) per % of bender difference")


class CameraParams(_Strict):
    """Beam camera at the focus (defaults match ``configs`` CameraConfig)."""

    size_x: int = Field(default=320, ge=8, description="pixels")
    size_y: int = Field(default=256, ge=8, description="pixels")
    pixel_um: float = Field(default=0.65, gt=0, description="pixel pitch, um")
    counts_per_photon: float = Field(
        default=1.0e-5, gt=0, description="attenuators x scintillator x gain, counts/photon")
    background_cps: float = Field(default=10.0, ge=0, description="background, counts/s/pixel")
    max_count: int = Field(default=4095, ge=1, description="saturation (12-bit)")
    window_fraction: float = Field(
        default=0.25, gt=0, description="objective window rms, as a fraction of the sensor")


class DriftParams(_Strict):
    """A linear drift of one DOF: its effective position is ``pos + rate * t_s / 3600``."""

    dof: str = Field(default="dcm.pitch", description="the drifting DOF key")
    rate_per_hour: float = Field(default=0.0, description="DOF units per hour")


def _default_offsets() -> dict[str, float]:
    return {
        "dcm.pitch": 7.3, "dcm.roll": -61.0, "ssa.center": 37.0, "ssa.gap": -2.5,
        "vkb.pitch": 4.2, "vkb.bender": 43.0, "vkb.bender_us": 47.0, "vkb.bender_ds": 39.0,
        "vkb.height": -83.0, "vkb.roll": 1300.0, "hkb.pitch": -12.0, "hkb.bender": 57.0,
        "hkb.height": 71.0,
    }


class OpticsParams(_Strict):
    """The whole train. ``offsets``: where each DOF's nominal geometry sits in motor units
    (for ``ssa.gap`` the real gap is ``position - offset``; for a bender the aligned power)."""

    hard: bool = Field(default=False, description="two-actuator VKB bender + slope errors")
    source: SourceParams = SourceParams()
    dcm: DcmParams = DcmParams()
    ssa: SlitParams = SlitParams()
    vkb: MirrorParams = MirrorParams(z_m=29.5, length_m=0.30, p_m=29.5, q_m=1.0,
                                     power_per_percent=1.0e-3)
    hkb: MirrorParams = MirrorParams(z_m=30.0, length_m=0.20, p_m=5.0, q_m=0.5,
                                     power_per_percent=1.0e-2)
    camera_z_m: float = Field(default=30.5, gt=0, description="camera distance from source, m")
    camera: CameraParams = CameraParams()
    offsets: dict[str, float] = Field(default_factory=_default_offsets)
    drift: DriftParams = DriftParams()

    @model_validator(mode="after")
    def _consistent(self) -> OpticsParams:
        z = [self.dcm.z_m, self.ssa.z_m, self.vkb.z_m, self.hkb.z_m, self.camera_z_m]
        if z != sorted(z):
            raise ValueError(f"elements must be in beam order dcm, ssa, vkb, hkb, camera: {z} m")
        missing = set(dof_keys(self.hard)) - set(self.offsets)
        if missing:
            raise ValueError(f"offsets missing for DOFs {sorted(missing)}")
        if self.drift.dof not in dof_keys(self.hard):
            raise ValueError(f"drift DOF {self.drift.dof!r} is not a DOF of this variant")
        return self


def hard_params(**overrides) -> OpticsParams:
    """The hard variant: VKB bender as two actuators with coma, and mirror slope errors.

    Each actuator moves the mean (focal power) by half its step, so the VKB's
    ``power_per_percent`` is doubled to keep each actuator's 1-D FWHM near 10 % of range."""
    vkb = OpticsParams().vkb.model_copy(update={
        "slope_error_urad": 0.25, "coma_per_percent": 3.0e-6, "power_per_percent": 2.0e-3})
    hkb = OpticsParams().hkb.model_copy(update={"slope_error_urad": 0.25})
    return OpticsParams(hard=True, vkb=vkb, hkb=hkb, **overrides)
