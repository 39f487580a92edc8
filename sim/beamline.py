"""Assemble the simulated beamline's PV groups from a validated config.

Every motor of ``beamline.elements`` is a motor record; a ``camera`` element is an
areaDetector-style camera whose frames come from the optics train
(:mod:`sim.optics_train`), which also sets the sample counts' transmission and spot size.
A beamline without optics elements has neither (its sample sees the nominal beam).
With ``simulation.autosave`` set, motor positions/settings and the scaler's TP survive a
restart (:mod:`sim.autosave`).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from sim.autosave import Autosave, AutosaveState, ScalerState
from sim.camera_record import CameraRecord, camera_records, make_camera_record
from sim.config import FullConfig
from sim.errors import SimError
from sim.motor_record import MotorRecord
from sim.optics.camera import nd_stats
from sim.optics_train import OpticsTrain, optics_motors
from sim.physics import CountModel, Exposure
from sim.ring import RingCurrent, RingGroup
from sim.samples import Sample, make_sample
from sim.scaler_record import ScalerRecord
from sim.shutter import ShutterGroup

logger = logging.getLogger(__name__)


def hidden_sample(config: FullConfig) -> Sample:
    """The sample the beam sees, spread over the stage motors' soft-limit ranges (mm)."""
    bl, sim = config.beamline, config.simulation
    x_cfg, y_cfg = bl.motor(sim.beam.x_motor), bl.motor(sim.beam.y_motor)
    extent = (x_cfg.low_limit, x_cfg.high_limit, y_cfg.low_limit, y_cfg.high_limit)
    return make_sample(sim.sample, sim.seed, extent)


class SimBeamline:
    """Every simulated record of one beamline, with one merged caproto ``pvdb``."""

    def __init__(self, config: FullConfig):
        bl, sim = config.beamline, config.simulation
        self.config = config
        self.sample = hidden_sample(config)
        self.model = CountModel(sim.flux, self.sample, sim.seed)
        self.optics = OpticsTrain(bl, sim.optics, sim.seed) if optics_motors(bl) else None
        self.motors = {
            m.name: MotorRecord(bl.pv(m.pv), self._placed(m), sim.motor(m.name), sim.tick_s,
                                np.random.default_rng([sim.seed, 0x30, i]))
            for i, m in enumerate(bl.motors)
        }
        self.ring = RingGroup(bl.prefix, RingCurrent(sim.ring))
        self.shutter = ShutterGroup(bl.prefix, sim.shutter)
        self.scaler = ScalerRecord(bl.pv(bl.scaler.pv), bl.scaler, self.counts)
        self.cameras: list[CameraRecord] = []
        if self.optics is not None:
            self.optics.attach(self.motors)
            self.cameras.append(make_camera_record(
                bl.pv(self.optics.camera.pv), self.optics.camera, self.camera_frame, nd_stats))
        self.autosave = (Autosave(sim.autosave.path, sim.autosave.period_s)
                         if sim.autosave is not None else None)
        self.restored: list[str] = []  # what the autosave file gave back at start-up
        self._initialised = False
        self.pvdb: dict = {}
        for group in self._groups():
            self.pvdb.update(group.pvdb)
        # PV names the config may rename (the groups use the default suffixes)
        for default, configured in (("RING:CURRENT", bl.ring_current_pv),
                                    ("SHUTTER", bl.shutter_pv),
                                    ("SHUTTER:STATUS", bl.shutter_status_pv)):
            if default != configured:
                self.pvdb[bl.pv(configured)] = self.pvdb.pop(bl.pv(default))

    def _placed(self, motor):
        """The motor's config with the optics train's start-up position, if it has one."""
        start = self.optics.start_position(motor.name) if self.optics else None
        if start is None:
            return motor
        return motor.model_copy(update={"initial_position": round(start, motor.precision)})

    def _groups(self) -> tuple:
        return (*self.motors.values(), self.ring, self.shutter, self.scaler, *self.cameras)

    def records(self) -> list[tuple[str, str]]:
        """(record name, record type) of every record, as ``dbl`` would list them."""
        bl = self.config.beamline
        out = [(bl.pv(m.pv), "motor") for m in bl.motors]
        out.append((bl.pv(bl.scaler.pv), "scaler"))
        out.append((f"{bl.pv(bl.scaler.pv)}:NACQ", "longout"))
        out += [(bl.pv(bl.ring_current_pv), "ai"), (bl.pv("RING:DUMP"), "bo"),
                (bl.pv("RING:REFILL"), "bo"), (bl.pv(bl.shutter_pv), "bo"),
                (bl.pv(bl.shutter_status_pv), "bi")]
        for camera in self.cameras:
            out += camera_records(camera)
        return out

    def camera_frame(self, exposure_s: float) -> np.ndarray:
        """A beam-camera frame: the optics' beam, scaled by ring current and shutter."""
        fraction = self.ring.ring.fraction() * (1.0 if self.shutter.is_open else 0.0)
        return self.optics.frame(exposure_s, fraction)

    def exposure(self, time_s: float) -> Exposure:
        """Conditions of a count of ``time_s`` seconds taken now."""
        beam = self.config.simulation.beam
        transmission, spot_x, spot_y = (self.optics.spot_at_sample() if self.optics
                                        else (1.0, 0.0, 0.0))
        return Exposure(
            transmission=transmission, spot_x_mm=spot_x, spot_y_mm=spot_y,
            time_s=time_s,
            ring_fraction=self.ring.ring.fraction(),
            shutter_open=self.shutter.is_open,
            x=self.motors[beam.x_motor].position,
            y=self.motors[beam.y_motor].position,
            energy_ev=self.motors[beam.energy_motor].position,
        )

    def counts(self, time_s: float) -> dict[int, int]:
        """Counts per scaler channel number for one exposure (channel 1, the clock, excluded).

        Channels named ``i0`` and ``det`` get the physics model; any other gets dark counts.
        """
        exp = self.exposure(time_s)
        drawn = self.model.sample_counts(exp)
        dark = self.model.flux.dark_cps * time_s
        return {
            ch.number: drawn[ch.name] if ch.name in drawn else int(self.model.rng.poisson(dark))
            for ch in self.config.beamline.scaler.channels
            if ch.number != 1
        }

    async def initialise(self) -> None:
        """Write every config-derived value, or the autosaved one; call before serving."""
        saved = self.autosave.load() if self.autosave is not None else None
        if saved is not None:
            self._restore_motors(saved)
        for group in self._groups():
            await group.initialise()
        for camera in self.cameras:
            await camera.stats.centroid_threshold.write(
                self.config.simulation.optics.centroid_threshold)
        if saved is not None and saved.scaler is not None:
            await self.scaler.tp.write(saved.scaler.tp)
            self.restored.append(f"{self.scaler.prefix}.TP={saved.scaler.tp}")
        if saved is not None:
            logger.info("restored from %s: %s", self.autosave.path, ", ".join(self.restored))
        self._initialised = True

    def _restore_motors(self, saved: AutosaveState) -> None:
        for name, state in saved.motors.items():
            motor = self.motors.get(name)
            if motor is None:
                logger.warning("autosave %s: motor %r is not in this config; not restored",
                               self.autosave.path, name)
                continue
            try:
                motor.restore(state)
            except SimError as exc:
                logger.warning("autosave %s: %s; not restored", self.autosave.path, exc)
                continue
            user = round(motor.user_of(state.load + state.shift), motor.motor_cfg.precision)
            self.restored.append(f"{name}={user}")

    def autosave_state(self) -> AutosaveState:
        """What the autosave file holds: every motor, and the scaler's TP."""
        return AutosaveState(
            motors={name: motor.autosave_state() for name, motor in self.motors.items()},
            scaler=ScalerState(tp=float(self.scaler.tp.value)))

    def save_autosave(self) -> bool:
        """Save now (if autosave is on, the beamline was initialised and something changed).
        True if the file was written."""
        if self.autosave is None or not self._initialised:
            return False
        return self.autosave.save(self.autosave_state())

    async def _autosave_loop(self) -> None:
        while True:
            await asyncio.sleep(self.autosave.period_s)
            self.save_autosave()

    async def run_background(self, async_lib=None) -> None:
        """Background loops (ring current, autosave); a caproto ``startup_hook``."""
        loops = [self.ring.run()]
        if self.autosave is not None:
            loops.append(self._autosave_loop())
        await asyncio.gather(*loops)
