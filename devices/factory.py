"""Build the ophyd-async beamline from the YAML config (``devices.config``).

Event field names (identical in the classic flavour, see ``devices.classic``):
``sample_x``, ``sample_y``, ``mono_energy`` (motor readbacks, EGU from config), scaler
channels by name (``clock``, ``i0``, ``det``; counts), ``ring_current`` (mA),
``shutter_status`` (``"OPEN"``/``"CLOSED"``).
"""

from __future__ import annotations

from ophyd_async.core import DEFAULT_TIMEOUT, Device, LazyMock, NotConnectedError

from devices.beam import RingCurrent, Shutter
from devices.ca_put import raise_put_errors
from devices.config import BeamlineConfig, MotorConfig
from devices.errors import DeviceConnectError
from devices.motor import KeepChildNames, SampleStage, VerifiedMotor
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
    """The beamline's ophyd-async devices; children keep their own names.

    Attributes: ``sample_stage`` (``.x``, ``.y``: :class:`VerifiedMotor`), ``mono_energy``
    (:class:`VerifiedMotor`), ``scaler`` (:class:`Scaler`), ``ring_current``
    (:class:`RingCurrent`), ``shutter`` (:class:`Shutter`), ``config``.
    """

    def __init__(self, config: BeamlineConfig, name: str = "beamline") -> None:
        self.config = config
        self.sample_stage = SampleStage(_motor(config, "sample_x"), _motor(config, "sample_y"))
        self.mono_energy = _motor(config, "mono_energy")
        self.scaler = Scaler(
            config.pv(config.scaler.pv),
            {c.name: c.number for c in config.scaler.channels},
            name=config.scaler.name,
        )
        self.ring_current = RingCurrent(config.pv(config.ring_current_pv), name="ring_current")
        self.shutter = Shutter(
            config.pv(config.shutter_pv), config.pv(config.shutter_status_pv), name="shutter"
        )
        super().__init__(name)
        raise_put_errors(self)

    @property
    def motors(self) -> dict[str, VerifiedMotor]:
        """Motors by config name: ``{"sample_x": ..., "sample_y": ..., "mono_energy": ...}``."""
        return {
            "sample_x": self.sample_stage.x,
            "sample_y": self.sample_stage.y,
            "mono_energy": self.mono_energy,
        }

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


def _motor(config: BeamlineConfig, name: str) -> VerifiedMotor:
    m: MotorConfig = config.motor(name)
    return VerifiedMotor(config.pv(m.pv), name=m.name, tolerance=m.tolerance)


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
