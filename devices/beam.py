"""ophyd-async ring current and shutter."""

from __future__ import annotations

from ophyd_async.core import (
    AsyncStatus,
    DeviceMock,
    StandardReadable,
    StrictEnum,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
    wait_for_value,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.epics.core import epics_signal_r, epics_signal_rw

from devices.errors import ShutterError


class RingCurrent(StandardReadable):
    """Storage-ring current (ai, mA). Its reading is one field named like the device
    (``ring_current``). Use :func:`devices.suspenders.suspend_on_beam_loss` to pause scans."""

    def __init__(self, pv: str, name: str = "") -> None:
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.current = epics_signal_r(float, pv)
        super().__init__(name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        self.current.set_name(name)


class ShutterState(StrictEnum):
    """The shutter bo/bi states."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"


class ShutterMock(DeviceMock["Shutter"]):
    """Mock behaviour: the status follows the command at once."""

    async def connect(self, device: Shutter) -> None:
        callback_on_mock_put(device.command, lambda v: set_mock_value(device.status, v))


@default_mock_class(ShutterMock)
class Shutter(StandardReadable):
    """Beam shutter: ``set(ShutterState.OPEN)`` puts the command and completes only when the
    status readback agrees. Reading is ``<name>_status`` (e.g. ``shutter_status``).

    Args:
        command_pv: bo command PV. status_pv: bi readback PV.
        settle_timeout_s: how long the status may take to follow the command.
    """

    def __init__(
        self, command_pv: str, status_pv: str, name: str = "", settle_timeout_s: float = 5.0
    ) -> None:
        self.command = epics_signal_rw(ShutterState, command_pv)
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.status = epics_signal_r(ShutterState, status_pv)
        self._settle_timeout_s = settle_timeout_s
        super().__init__(name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator="_")  # shutter_status, as classic ophyd

    @AsyncStatus.wrap
    async def set(self, value: ShutterState | str) -> None:
        """Command OPEN/CLOSED and wait for the status. Raises ValueError for other values,
        ShutterError if the status does not follow within ``settle_timeout_s``."""
        try:
            state = ShutterState(value)
        except ValueError as exc:
            choices = [s.value for s in ShutterState]
            raise ValueError(f"{self.name}: {value!r} is not one of {choices}") from exc
        await self.command.set(state)
        try:
            await wait_for_value(self.status, state, timeout=self._settle_timeout_s)
        except TimeoutError as exc:
            now = await self.status.get_value()
            raise ShutterError(
                f"{self.name} commanded {state.value} but {self.status.source} reads "
                f"{now.value} after {self._settle_timeout_s} s"
            ) from exc

    async def locate(self) -> dict:
        """Setpoint (last command) and readback (status)."""
        return {
            "setpoint": await self.command.get_value(),
            "readback": await self.status.get_value(),
        }
