"""Exceptions raised by ``devices``. One root, :class:`DeviceError`, with dual inheritance so
callers can catch either the package root or the builtin category."""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every error raised by the ``devices`` package."""


class LimitError(ValueError, DeviceError):
    """A requested position is outside the soft limits (or not a finite number).

    Message form: ``move of sample_x to 12.0 mm outside limits [-10.0, 10.0] mm``.
    """


class MoveError(RuntimeError, DeviceError):
    """A move finished (put completed / DMOV=1) but the readback is not at the target."""


class PutError(RuntimeError, DeviceError):
    """A Channel Access put was rejected by the IOC or cut by a disconnect."""


class DeviceConnectError(ConnectionError, DeviceError):
    """PVs could not be connected within the timeout. ``pvs`` lists the missing ones."""

    def __init__(self, message: str, pvs: list[str] | None = None) -> None:
        super().__init__(message)
        self.pvs = list(pvs or [])


class ShutterError(RuntimeError, DeviceError):
    """The shutter status readback did not reach the commanded state in time."""


def limit_message(name: str, value: float, low: float, high: float, egu: str) -> str:
    """The one wording used for limit violations, by both device flavours."""
    return f"move of {name} to {value} {egu} outside limits [{low}, {high}] {egu}"
