"""Build the ophyd-async beamline from the YAML config (``configs.schema``).

Event field names (identical in the classic flavour, see ``devices.classic``): each motor's
config name (``sample_x``, ``dcm_pitch``: readbacks, EGU from config), scaler channels by name
(``clock``, ``i0``, ``det``; counts), camera stats ``<camera>_total`` ... (counts, pixels),
``ring_current`` (mA), ``shutter_status`` (``"OPEN"``/``"CLOSED"``).
"""

from __future__ import annotations

from ophyd_async.core import DEFAULT_TIMEOUT, Device, LazyMock, NotConnectedError

from configs.schema import BeamlineConfig, MotorConfig
from devices.beam import RingCurrent, Shutter
from devices.ca_put import raise_put_errors
from devices.camera import BeamCamera
from devices.elements import GROUP_CLASSES, MotorGroup
from devices.errors import DeviceConnectError
from devices.motor import KeepChildNames, VerifiedMotor
from devices.scaler import Scaler


class PVConnectError(NotConnectedError, DeviceConnectError):
    """Not connectable PVs, listed with the timeout. Also an ophyd-async NotConnectedError,
    so ``ensure_connected``/``init_devices`` pass it through unchanged."""

    def __init__(self, message: str, pvs: list[str]) -> None:
        NotConnectedError.__init__(self, message)
        self.args = (message,)
        self.pvs = pvs

    def __str__(self) -> str:
        return self.args[0]


def missing_pvs(error: BaseException) -> list[str]:
    """Leaf sources (``ca://PV``) or messages of a NotConnectedError tree."""
    if isinstance(error, NotConnectedError):
        if not error.sub_errors:
            return [str(error).strip()]
        return [pv for sub in error.sub_errors.values() for pv in missing_pvs(sub)]
    return [f"{type(error).__name__}: {error}"]


class Beamline(KeepChildNames, Device):
    """The beamline's ophyd-async devices, one child per element of the config, named by it.

    Children (config ``beamline.elements``): a motor group per ``stage``/``dcm``/``slits``/
    ``kb_mirror`` element (:mod:`devices.elements`, e.g. ``bl.vkb.pitch``), a
    :class:`VerifiedMotor` per ``motor`` element (``bl.mono_energy``), a :class:`Scaler`,
    a :class:`BeamCamera` per camera; plus ``ring_current`` (:class:`RingCurrent`),
    ``shutter`` (:class:`Shutter`) and ``config``. Every device keeps its config name.
    """

    def __init__(self, config: BeamlineConfig, name: str = "beamline") -> None:
        self.config = config
        for element in config.elements:
            setattr(self, element.name, _element_device(config, element))
        self.ring_current = RingCurrent(config.pv(config.ring_current_pv), name="ring_current")
        self.shutter = Shutter(
            config.pv(config.shutter_pv), config.pv(config.shutter_status_pv), name="shutter"
        )
        super().__init__(name)
        raise_put_errors(self)

    @property
    def motors(self) -> dict[str, VerifiedMotor]:
        """Every motor by config name: ``{"sample_x": ..., "dcm_pitch": ..., ...}``."""
        found: dict[str, VerifiedMotor] = {}
        for element in self.config.of_kind("motor", *GROUP_CLASSES):
            device = getattr(self, element.name)
            for motor in (device.motors.values() if isinstance(device, MotorGroup) else [device]):
                found[motor.name] = motor
        return found

    def motor(self, name: str) -> VerifiedMotor:
        """The motor called ``name`` in the config. Raises KeyError naming the known ones."""
        motors = self.motors
        if name not in motors:
            raise KeyError(f"no motor {name!r} in {self.name}; known: {list(motors)}")
        return motors[name]

    async def connect(
        self,
        mock: bool | LazyMock = False,
        timeout: float = DEFAULT_TIMEOUT,
        force_reconnect: bool = False,
    ) -> None:
        """Connect every device. Raises PVConnectError naming the missing PVs and timeout."""
        try:
            await super().connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)
        except NotConnectedError as exc:
            pvs = missing_pvs(exc)
            raise PVConnectError(
                f"{self.name}: {len(pvs)} PV(s) not connected within {timeout} s: "
                + ", ".join(pvs),
                pvs,
            ) from exc


def _motor(config: BeamlineConfig, m: MotorConfig) -> VerifiedMotor:
    return VerifiedMotor(config.pv(m.pv), name=m.name, tolerance=m.tolerance)


def _element_device(config: BeamlineConfig, element):
    """The ophyd-async device of one config element."""
    if element.kind == "motor":
        return _motor(config, element)
    if element.kind == "scaler":
        return Scaler(config.pv(element.pv), {c.name: c.number for c in element.channels},
                      name=element.name, hinted={c.name for c in element.channels if c.hinted})
    if element.kind == "camera":
        return BeamCamera(config.pv(element.pv), name=element.name)
    group = GROUP_CLASSES[element.kind]
    return group({m.role: _motor(config, m) for m in element.motors}, name=element.name)


def make_beamline(config: BeamlineConfig, name: str = "beamline") -> Beamline:
    """The ophyd-async beamline for ``config`` (not connected; connect after creating
    the RunEngine: ``RE(ensure_connected(bl))`` or ``await bl.connect()`` in its loop)."""
    return Beamline(config, name=name)


def disconnect_channel_access() -> None:
    """Close every Channel Access channel the ophyd-async devices of this process opened.

    Call before the IOCs go away on purpose (end of a demo or test) so libca does not print
    "Virtual circuit disconnect" for each circuit. Devices must be connected again after.
    """
    import aioca  # ophyd-async's CA client library

    aioca.purge_channel_caches()
