"""The optics train of a served beamline: motor records -> Gaussian-beam model -> camera.

The optics elements of ``beamline.elements`` (kinds ``dcm``, ``slits``, ``kb_mirror``) map
onto the model's DOF keys as ``"{element name}.{motor role}"`` (e.g. ``vkb.pitch``); the
set must be exactly the model variant's DOFs (:func:`sim.optics.dofs.dof_keys`). The
model reads each motor's mechanical (load) position, so backlash, stalls and calibration
(SET) act on the optics as on a real mount.

- :meth:`OpticsTrain.frame`: one camera frame (``sim.optics.camera.render``) of the beam
  the motors deliver now, drift included (clock = seconds since the train was built).
- :meth:`OpticsTrain.spot_at_sample`: the transmission relative to the hidden optimum and
  the spot rms, which the scaler's sample counts use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from configs.schema import BeamlineConfig, CameraConfig
from sim.config import OpticsSimConfig
from sim.errors import SimConfigError
from sim.optics.camera import render
from sim.optics.model import BeamAtCamera, OpticsModel
from sim.optics.params import CameraParams, DriftParams, OpticsParams, hard_params
from sim.optics.scoring import find_optimum, misaligned_start

OPTICS_KINDS = ("dcm", "slits", "kb_mirror")


def optics_motors(beamline: BeamlineConfig) -> dict[str, str]:
    """``{DOF key: motor name}`` of the beamline's optics elements (empty if none)."""
    return {f"{el.name}.{m.role}": m.name
            for el in beamline.of_kind(*OPTICS_KINDS) for m in el.motors}


def optics_params(camera: CameraConfig, cfg: OpticsSimConfig) -> OpticsParams:
    """Model parameters for the config's variant, camera geometry and drift."""
    cam = CameraParams(size_x=camera.size_x, size_y=camera.size_y, pixel_um=camera.pixel_um,
                       max_count=camera.max_count, counts_per_photon=cfg.counts_per_photon,
                       background_cps=cfg.background_cps)
    drift = DriftParams(dof=cfg.drift_dof, rate_per_hour=cfg.drift_per_hour)
    try:
        if cfg.variant == "hard":
            return hard_params(camera=cam, drift=drift)
        return OpticsParams(camera=cam, drift=drift)
    except ValueError as exc:
        raise SimConfigError(f"simulation.optics: {exc}") from exc


class OpticsTrain:
    """The hidden optics of one beamline; built before the motor records, which it places."""

    def __init__(self, beamline: BeamlineConfig, cfg: OpticsSimConfig, seed: int):
        self.keys = optics_motors(beamline)
        cameras = beamline.of_kind("camera")
        if not cameras:
            raise SimConfigError("beamline has optics elements but no camera element")
        self.camera = cameras[0]
        self.params = optics_params(self.camera, cfg)
        self.model = OpticsModel(self.params)
        self._check_dofs(cfg.variant)
        self.bounds = {k: (beamline.motor(n).low_limit, beamline.motor(n).high_limit)
                       for k, n in self.keys.items()}
        self.optimum, self.j_star = find_optimum(self.model, self.bounds)
        self._aligned = _on_sensor_flux(self.model.beam(self.optimum))
        rng = np.random.default_rng([seed, 0x0F])
        self.start = (misaligned_start(self.model, self.bounds, self.optimum,
                                       cfg.misalignment_fraction, rng)
                      if cfg.misalignment_fraction > 0 else dict(self.optimum))
        self.frame_rng = np.random.default_rng([seed, 0xCA])
        self._t0 = time.monotonic()
        self._positions: Mapping[str, object] = {}

    def _check_dofs(self, variant: str) -> None:
        missing = sorted(set(self.model.dofs) - set(self.keys))
        unknown = sorted(set(self.keys) - set(self.model.dofs))
        if missing or unknown:
            raise SimConfigError(
                f"optics elements do not match the {variant!r} optics model: missing DOFs "
                f"{missing}, unknown DOFs {unknown} (DOF key = element name.motor role)")

    def start_position(self, motor_name: str) -> float | None:
        """Start-up position of an optics motor (None for any other motor)."""
        for key, name in self.keys.items():
            if name == motor_name:
                return self.start[key]
        return None

    def attach(self, motor_records: Mapping[str, object]) -> None:
        """Read positions from these motor records (``.position``, by motor name) from now."""
        self._positions = {key: motor_records[name] for key, name in self.keys.items()}

    def positions(self) -> dict[str, float]:
        """Current mechanical positions by DOF key."""
        return {key: record.position for key, record in self._positions.items()}

    def beam(self) -> BeamAtCamera:
        return self.model.beam(self.positions(), t_s=time.monotonic() - self._t0)

    def frame(self, exposure_s: float, beam_fraction: float = 1.0) -> np.ndarray:
        """One frame (size_y, size_x) of counts for an exposure of ``exposure_s`` s;
        ``beam_fraction`` scales the flux (ring current / nominal, 0 with the shutter shut)."""
        beam = self.beam()
        beam = replace(beam, flux_ph_s=beam.flux_ph_s * beam_fraction)
        return render(beam, self.params.camera, exposure_s, self.frame_rng)

    def spot_at_sample(self) -> tuple[float, float, float]:
        """(transmission relative to the aligned optics, spot rms x, y in mm)."""
        beam = self.beam()
        return (_on_sensor_flux(beam) / self._aligned, beam.sigma_x_um * 1e-3,
                beam.sigma_y_um * 1e-3)


def _on_sensor_flux(beam: BeamAtCamera) -> float:
    return beam.flux_ph_s * beam.fraction_on_sensor
