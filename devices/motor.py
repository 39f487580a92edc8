"""ophyd-async motors: the stock motor-record ``Motor``, with a verified move.

:class:`VerifiedMotor` is ``ophyd_async.epics.motor.Motor`` with one change, in its move
logic: a move is reported done only when the readback is within tolerance of the target
(FIELD_NOTES "Put failures vanish": put completion alone is not proof of arrival), and
limit violations raise :class:`~devices.errors.LimitError` naming motor, value, limits, units.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from functools import cached_property

from ophyd_async.core import SignalR, TimeoutCalculator
from ophyd_async.epics.motor import Motor, MotorFlyableMovableLogic

from devices.errors import LimitError, MoveError, limit_message


@dataclass
class VerifiedMotorLogic(MotorFlyableMovableLogic):
    """Motor-record move logic that checks limits with a clear message and verifies arrival."""

    deadband: SignalR[float]
    tolerance: float | None = None

    async def check_move(self, new_position: float) -> None:
        """Raise LimitError if ``new_position`` is not finite or outside [LLM, HLM].

        As in the motor record, DLLM == DHLM == 0 means "no soft limits".
        """
        name = self.readback.name
        if not math.isfinite(new_position):
            raise LimitError(f"move of {name} to {new_position}: not a finite number")
        low, high, egu, dial_low, dial_high = await asyncio.gather(
            self.low_limit_travel.get_value(),
            self.high_limit_travel.get_value(),
            self.motor_egu.get_value(),
            self.dial_low_limit_travel.get_value(),
            self.dial_high_limit_travel.get_value(),
        )
        if dial_low == 0 and dial_high == 0:
            return
        if not low <= new_position <= high:
            raise LimitError(limit_message(name, new_position, low, high, egu))

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        """Put .VAL with completion, then :meth:`verify`."""
        await super().move(new_position, timeout)
        await self.verify(new_position)

    async def verify(self, target: float) -> float:
        """Return the readback if within tolerance of ``target``, else raise MoveError.

        Tolerance: the configured one, else the record's RDBD. The readback is fetched
        fresh (not from the monitor cache, whose update may lag the put reply).
        """
        readback, deadband, egu = await asyncio.gather(
            self.readback.get_value(cached=False),
            self.deadband.get_value(),
            self.motor_egu.get_value(),
        )
        tolerance = self.tolerance if self.tolerance is not None else deadband
        if not abs(readback - target) <= tolerance:
            raise MoveError(
                f"move of {self.readback.name} to {target} {egu} ended at readback "
                f"{readback} {egu}, off by {abs(readback - target):.6g} {egu}; "
                f"tolerance {tolerance} {egu}"
            )
        return readback


class VerifiedMotor(Motor):
    """Stock ophyd-async ``Motor`` whose ``set`` raises MoveError unless it arrived.

    Args:
        prefix: motor record name, e.g. ``"BL:SAMPLE:X"``.
        name: device name; also the event field of the readback (e.g. ``"sample_x"``).
        tolerance: |readback - target| allowed at the end of a move, in EGU. ``None``
            uses the record's RDBD.

    Raises (from ``set``): LimitError before moving; MoveError after a short move;
    PutError if the IOC rejects the put (with :func:`devices.ca_put.raise_put_errors`).
    """

    def __init__(self, prefix: str, name: str = "", tolerance: float | None = None) -> None:
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"motor {prefix}: tolerance must be > 0, got {tolerance}")
        self._tolerance = tolerance
        super().__init__(prefix, name)

    @cached_property
    def _logic(self) -> VerifiedMotorLogic:
        return VerifiedMotorLogic(
            readback=self.user_readback,
            setpoint=self.user_setpoint,
            motor_stop=self.motor_stop,
            low_limit_travel=self.low_limit_travel,
            high_limit_travel=self.high_limit_travel,
            dial_low_limit_travel=self.dial_low_limit_travel,
            dial_high_limit_travel=self.dial_high_limit_travel,
            velocity=self.velocity,
            acceleration_time=self.acceleration_time,
            motor_done_move=self.motor_done_move,
            max_velocity=self.max_velocity,
            motor_egu=self.motor_egu,
            deadband=self.deadband,
            tolerance=self._tolerance,
        )


class KeepChildNames:
    """Mixin for containers whose children keep their own (config) names.

    ``Device.set_name`` renames children ``parent-child``; for a stage or a beamline we
    want ``sample_x``, not ``beamline-sample_stage-x``.
    """

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        self._name = name
        self.__dict__.pop("log", None)  # Device.log caches the name
        for attr, child in self.children():  # type: ignore[attr-defined]
            child.set_name(child.name or f"{name}_{attr}")
