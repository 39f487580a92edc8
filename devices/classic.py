"""Classic ophyd flavour of the beamline, for facilities still on ophyd.

Stock classes: ``EpicsMotor`` (subclassed only to verify moves and word limit errors, see
:mod:`devices.classic_motor`),
``ophyd.scaler.ScalerCH`` (channel naming from NMn via ``select_channels``),
``EpicsSignalRO`` for the ring current. Control layer: whatever ophyd selected
(caproto here, as pyepics is not installed); pass ``control_layer`` to choose.
Event fields are the same as the ophyd-async flavour (see ``devices`` docstring).
"""

from __future__ import annotations

import gc

import ophyd
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd import FormattedComponent as FCpt
from ophyd.device import DynamicDeviceComponent as DDCpt
from ophyd.device import Kind
from ophyd.scaler import ScalerCH, ScalerChannel
from ophyd.status import SubscriptionStatus

from configs.schema import BeamlineConfig, MotorConfig
from devices.caproto_gc import collector_paused
from devices.classic_camera import ClassicBeamCamera
from devices.classic_motor import VerifiedEpicsMotor
from devices.errors import DeviceConnectError

SHUTTER_STATES = ("CLOSED", "OPEN")


class NamedScalerChannel(ScalerChannel):
    """Stock ``ScalerChannel`` reading NMn as text (string=True) whether the IOC serves
    DBF_STRING or a char waveform (stock: an int16 array, which breaks select_channels)."""

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


class ClassicMotorGroup:
    """Motors of one element as attributes named by role (``vkb.pitch``); a plain container,
    so each ``EpicsMotor`` keeps its config name (``vkb_pitch``)."""

    def __init__(self, name: str, motors: dict[str, VerifiedEpicsMotor]) -> None:
        self.name = name
        self.motors = dict(motors)  # {role: motor}
        for role, motor in motors.items():
            setattr(self, role, motor)


class ClassicBeamline:
    """Same attributes as :class:`devices.factory.Beamline`, classic ophyd devices: one per
    config element, named by it, plus ``ring_current``, ``shutter`` and ``config``."""

    def __init__(self, config: BeamlineConfig, elements: dict, ring_current: EpicsSignalRO,
                 shutter: ClassicShutter) -> None:
        self.config = config
        self.elements = elements
        for name, device in elements.items():
            setattr(self, name, device)
        self.ring_current = ring_current
        self.shutter = shutter

    @property
    def motors(self) -> dict[str, VerifiedEpicsMotor]:
        """Every motor by config name."""
        found = {}
        for device in self.elements.values():
            for motor in (device.motors.values() if isinstance(device, ClassicMotorGroup)
                          else [device] if isinstance(device, VerifiedEpicsMotor) else []):
                found[motor.name] = motor
        return found

    def motor(self, name: str) -> VerifiedEpicsMotor:
        """The motor called ``name``. Raises KeyError naming the known ones."""
        motors = self.motors
        if name not in motors:
            raise KeyError(f"no motor {name!r}; known: {list(motors)}")
        return motors[name]

    def devices(self) -> list:
        """Every ophyd object (motors, scaler, cameras, ring current, shutter)."""
        out = []
        for device in self.elements.values():
            out += list(device.motors.values()) if isinstance(device, ClassicMotorGroup) \
                else [device]
        return [*out, self.ring_current, self.shutter]

    def destroy(self) -> None:
        """Disconnect every PV (ophyd ``destroy``); the beamline is unusable afterwards.

        Collects the released PV wrappers at once (see :mod:`devices.caproto_gc`)."""
        for dev in self.devices():
            dev.destroy()
        gc.collect()

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

    with collector_paused():  # caproto's callback-copy race, devices/caproto_gc.py
        bl = ClassicBeamline(
            config,
            {e.name: _classic_element(config, e) for e in config.elements},
            ring_current=EpicsSignalRO(config.pv(config.ring_current_pv), name="ring_current",
                                       auto_monitor=True),
            shutter=ClassicShutter(config.pv(config.shutter_pv),
                                   config.pv(config.shutter_status_pv), name="shutter"),
        )
        if connect:
            _connect(bl, config, timeout_s)
    return bl


def _connect(bl: ClassicBeamline, config: BeamlineConfig, timeout_s: float) -> None:
    """Wait for every PV, then name and hint the scaler channels as the ophyd-async flavour."""
    try:
        bl.wait_for_connection(timeout_s)
    except DeviceConnectError:
        bl.destroy()  # release the PVs still searching
        raise
    scaler = getattr(bl, config.scaler.name)
    scaler.select_channels([c.name for c in config.scaler.channels])
    # select_channels hints every channel, the clock too; hint as the ophyd-async flavour
    unhinted = {c.name for c in config.scaler.channels if not c.hinted or c.number == 1}
    for component in scaler.channels.component_names:
        channel = getattr(scaler.channels, component)
        if channel.s.name in unhinted:
            channel.s.kind = Kind.normal


def _classic_motor(config: BeamlineConfig, m: MotorConfig) -> VerifiedEpicsMotor:
    return VerifiedEpicsMotor(config.pv(m.pv), name=m.name, tolerance=m.tolerance)


def _classic_element(config: BeamlineConfig, element):
    """The classic ophyd device (or motor group) of one config element."""
    if element.kind == "motor":
        return _classic_motor(config, element)
    if element.kind == "scaler":
        scaler = BeamlineScaler(config.pv(element.pv), name=element.name)
        scaler.stage_sigs["count_mode"] = "OneShot"
        return scaler
    if element.kind == "camera":
        return ClassicBeamCamera(config.pv(element.pv), name=element.name)
    return ClassicMotorGroup(element.name,
                             {m.role: _classic_motor(config, m) for m in element.motors})
