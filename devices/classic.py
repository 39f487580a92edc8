"""Classic ophyd flavour of the beamline, for facilities still on ophyd.

Stock classes: ``EpicsMotor`` (subclassed only to verify moves and word limit errors),
``ophyd.scaler.ScalerCH`` (channel naming from NMn via ``select_channels``),
``EpicsSignalRO`` for the ring current. Control layer: whatever ophyd selected
(caproto here, as pyepics is not installed); pass ``control_layer`` to choose.
Event fields are the same as the ophyd-async flavour (see ``devices`` docstring).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import ophyd
from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd import FormattedComponent as FCpt
from ophyd.device import DynamicDeviceComponent as DDCpt
from ophyd.device import Kind
from ophyd.scaler import ScalerCH, ScalerChannel
from ophyd.status import DeviceStatus, SubscriptionStatus

from devices.config import BeamlineConfig
from devices.errors import DeviceConnectError, LimitError, MoveError, limit_message

SHUTTER_STATES = ("CLOSED", "OPEN")


class VerifiedEpicsMotor(EpicsMotor):
    """``EpicsMotor`` whose ``set`` status fails with MoveError unless the readback ends
    within ``tolerance`` (EGU; None: the record's RDBD) of the target."""

    retry_deadband = Cpt(EpicsSignalRO, ".RDBD", kind="omitted")
    # string=True: read EGU as text whether the IOC serves DBF_STRING or a char waveform
    # (the sim serves a char waveform, which the stock Cpt reads as an int16 array).
    motor_egu = Cpt(EpicsSignal, ".EGU", kind="config", string=True, auto_monitor=True)

    def __init__(self, prefix: str = "", *, name: str, tolerance: float | None = None, **kw):
        super().__init__(prefix, name=name, **kw)
        self.tolerance = tolerance

    def check_value(self, pos: float) -> None:
        """Raise LimitError if ``pos`` is not finite or outside [LLM, HLM] (0, 0: no limits)."""
        if not math.isfinite(pos):
            raise LimitError(f"move of {self.name} to {pos}: not a finite number")
        low, high = self.low_limit_travel.get(), self.high_limit_travel.get()
        if (low, high) != (0, 0) and not low <= pos <= high:
            raise LimitError(limit_message(self.name, pos, low, high, self.motor_egu.get()))

    def set(self, new_position: float, **kwargs) -> DeviceStatus:
        """Start a move; the returned status finishes after the readback is verified.

        ``timeout`` defaults to |distance|/VELO + 2*ACCL + 10 s (as ophyd-async's Motor), so
        a move never waits forever on an IOC that died (stock default: no timeout).
        """
        self.check_value(new_position)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._move_timeout(new_position)
        inner = super().set(new_position, **kwargs)
        outer = DeviceStatus(self)

        def _moved(status) -> None:
            # Verify off the CA callback thread: the check does a blocking CA get.
            threading.Thread(
                target=self._finish, args=(status, outer, new_position), daemon=True
            ).start()

        inner.add_callback(_moved)
        return outer

    def _move_timeout(self, target: float) -> float:
        velocity = self.velocity.get()
        if not velocity > 0:
            raise MoveError(f"{self.name}: VELO is {velocity}, cannot move")
        distance = abs(target - (self.position if self.position is not None else target))
        return distance / velocity + 2 * self.acceleration.get() + 10.0

    def _finish(self, inner, outer: DeviceStatus, target: float) -> None:
        try:
            egu = self.motor_egu.get()
            readback = self.user_readback.get(use_monitor=False)
            if not inner.success:
                raise MoveError(
                    f"move of {self.name} to {target} {egu} did not complete "
                    f"({inner.exception()!r}); readback {readback} {egu}"
                )
            tol = self.tolerance if self.tolerance is not None else self.retry_deadband.get()
            if not abs(readback - target) <= tol:
                readback = self._settled_readback(readback, target, tol)
            if not abs(readback - target) <= tol:
                raise MoveError(
                    f"move of {self.name} to {target} {egu} ended at readback {readback} "
                    f"{egu}, off by {abs(readback - target):.6g} {egu}; tolerance {tol} {egu}"
                )
        except Exception as exc:  # any failure, CA timeouts included, fails the status
            outer.set_exception(exc)
        else:
            outer.set_finished()

    def _settled_readback(self, readback: float, target: float, tol: float) -> float:
        """Readback once the motor is really idle (DMOV=1 and RBV steady for a poll).

        EpicsMotor ends a move on the next DMOV 0->1 it sees. Monitor callbacks can lag,
        so a late DMOV pair of an earlier move (after ``stop()``, or one made by another
        client) can end this move before it started. Only reached when off target.
        """
        velocity = max(self.velocity.get(), 1e-9)
        deadline = time.monotonic() + abs(target - readback) / velocity + 10.0
        while time.monotonic() < deadline:
            time.sleep(0.02)
            done = self.motor_done_move.get(use_monitor=False)
            now = self.user_readback.get(use_monitor=False)
            if abs(now - target) <= tol or (done == 1 and now == readback):
                return now
            readback = now
        return readback


class NamedScalerChannel(ScalerChannel):
    """Stock ``ScalerChannel`` reading NMn as text (string=True), as ``motor_egu`` above."""

    chname = FCpt(EpicsSignal, "{self.prefix}.NM{self._ch_num}", string=True, kind=Kind.config)

    def __init__(self, prefix: str, ch_num: int, **kwargs) -> None:
        # Stock __init__ ends with match_name(), a blocking CA get at construction time
        # (1 s timeout per channel without an IOC). select_channels() calls it once connected.
        self._ch_num = ch_num
        Device.__init__(self, prefix, **kwargs)


class BeamlineScaler(ScalerCH):
    """Stock ``ScalerCH`` (32 channels, ``select_channels`` by NMn) with text channel names."""

    channels = DDCpt(
        {f"chan{k:02d}": (NamedScalerChannel, "", {"ch_num": k, "kind": Kind.normal})
         for k in range(1, 33)}
    )


class ClassicShutter(Device):
    """Shutter: ``set("OPEN"|"CLOSED")`` puts the command and finishes when the status
    readback agrees (``settle_timeout_s``). Reading: ``shutter_status``."""

    command = FCpt(EpicsSignal, "{self._command_pv}", string=True, kind="omitted")
    status = FCpt(EpicsSignalRO, "{self._status_pv}", string=True, kind="hinted")

    def __init__(self, command_pv: str, status_pv: str, *, name: str, settle_timeout_s=5.0):
        self._command_pv, self._status_pv = command_pv, status_pv
        self.settle_timeout_s = settle_timeout_s
        super().__init__("", name=name)

    def set(self, value: str):
        """Status done when the command put completed and the status reads ``value``."""
        if value not in SHUTTER_STATES:
            raise ValueError(f"{self.name}: {value!r} is not one of {list(SHUTTER_STATES)}")
        wanted = value

        def arrived(*, value, **kwargs) -> bool:
            return value == wanted

        return self.command.set(wanted) & SubscriptionStatus(
            self.status, arrived, timeout=self.settle_timeout_s
        )


@dataclass
class ClassicSampleStage:
    """x/y motors (a plain container so the motors keep their config names)."""

    x: VerifiedEpicsMotor
    y: VerifiedEpicsMotor


@dataclass
class ClassicBeamline:
    """Same attributes as :class:`devices.factory.Beamline`, classic ophyd devices."""

    config: BeamlineConfig
    sample_stage: ClassicSampleStage
    mono_energy: VerifiedEpicsMotor
    scaler: BeamlineScaler
    ring_current: EpicsSignalRO
    shutter: ClassicShutter

    @property
    def motors(self) -> dict[str, VerifiedEpicsMotor]:
        return {"sample_x": self.sample_stage.x, "sample_y": self.sample_stage.y,
                "mono_energy": self.mono_energy}

    def devices(self) -> list:
        return [self.sample_stage.x, self.sample_stage.y, self.mono_energy, self.scaler,
                self.ring_current, self.shutter]

    def destroy(self) -> None:
        """Disconnect every PV (ophyd ``destroy``); the beamline is unusable afterwards."""
        for dev in self.devices():
            dev.destroy()

    def wait_for_connection(self, timeout_s: float = 10.0) -> None:
        """Raise DeviceConnectError naming every unconnected PV and the timeout."""
        for dev in self.devices():
            try:
                dev.wait_for_connection(timeout=timeout_s)
            except TimeoutError as exc:
                pvs = _unconnected_pvs(self.devices())
                raise DeviceConnectError(
                    f"{len(pvs)} PV(s) not connected within {timeout_s} s: " + ", ".join(pvs),
                    pvs,
                ) from exc


def _unconnected_pvs(devices: list) -> list[str]:
    pvs = []
    for dev in devices:
        signals = [dev] if not isinstance(dev, Device) else [s.item for s in dev.walk_signals()]
        pvs += [s.pvname for s in signals if hasattr(s, "pvname") and not s.connected]
    return pvs


def make_ophyd_beamline(
    config: BeamlineConfig,
    *,
    connect: bool = True,
    timeout_s: float = 10.0,
    control_layer: str | None = None,
) -> ClassicBeamline:
    """Classic ophyd beamline for ``config``; connects (``timeout_s``) unless ``connect=False``.

    Raises DeviceConnectError naming the missing PVs. ``control_layer`` ("caproto" or
    "pyepics") switches ophyd's CA layer first if given.
    """
    if control_layer is not None and ophyd.cl.name != control_layer:
        ophyd.set_cl(control_layer)

    def motor(name: str) -> VerifiedEpicsMotor:
        m = config.motor(name)
        return VerifiedEpicsMotor(config.pv(m.pv), name=m.name, tolerance=m.tolerance)

    scaler = BeamlineScaler(config.pv(config.scaler.pv), name=config.scaler.name)
    scaler.stage_sigs["count_mode"] = "OneShot"
    bl = ClassicBeamline(
        config=config,
        sample_stage=ClassicSampleStage(motor("sample_x"), motor("sample_y")),
        mono_energy=motor("mono_energy"),
        scaler=scaler,
        ring_current=EpicsSignalRO(config.pv(config.ring_current_pv), name="ring_current",
                                   auto_monitor=True),
        shutter=ClassicShutter(config.pv(config.shutter_pv), config.pv(config.shutter_status_pv),
                               name="shutter"),
    )
    if connect:
        try:
            bl.wait_for_connection(timeout_s)
        except DeviceConnectError:
            bl.destroy()  # release the PVs still searching
            raise
        scaler.select_channels([c.name for c in config.scaler.channels])
    return bl
