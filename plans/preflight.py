"""Checks a plan makes before its first move, for either ophyd flavour.

Both stock ophyd ``EpicsMotor`` and ophyd-async ``Motor`` name the motor-record fields the
same way (``low_limit_travel`` = .LLM, ``high_limit_travel`` = .HLM, ``motor_egu`` = .EGU),
so one plan stub reads them from either.
"""

from __future__ import annotations

from collections.abc import Sequence

from bluesky import plan_stubs as bps
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator, maybe_await

from plans.errors import PlanArgumentError
from plans.tasks import run_coroutine

Bounds = tuple[float, float]


def motor_units(motor) -> MsgGenerator[str]:
    """The motor's EGU, or '' if it has none."""
    egu = getattr(motor, "motor_egu", None)
    return "" if egu is None else str((yield from bps.rd(egu)))


def motor_limits(motor) -> MsgGenerator[Bounds | None]:
    """(LLM, HLM) in user units, or None when the motor has no soft limits (both 0)."""
    if not hasattr(motor, "low_limit_travel"):
        return None
    low = yield from bps.rd(motor.low_limit_travel)
    high = yield from bps.rd(motor.high_limit_travel)
    return None if low == high == 0 else (float(low), float(high))


def check_bounds(motors: Sequence, bounds: Sequence[Bounds]) -> MsgGenerator[list[str]]:
    """Refuse bounds that are empty or reach outside a motor's soft limits.

    Returns each motor's units. Raises PlanArgumentError naming motor, bounds and limits.
    """
    units = []
    for motor, (lo, hi) in zip(motors, bounds, strict=True):
        egu = yield from motor_units(motor)
        units.append(egu)
        if not lo < hi:
            raise PlanArgumentError(f"bounds of {motor.name} ({lo}, {hi}) {egu}: need low < high")
        limits = yield from motor_limits(motor)
        if limits and not (limits[0] <= lo and hi <= limits[1]):
            raise PlanArgumentError(
                f"bounds of {motor.name} [{lo}, {hi}] {egu} reach outside its limits "
                f"[{limits[0]}, {limits[1]}] {egu}"
            )
    return units


def check_fields(detectors: Sequence[Readable], fields: Sequence[str]) -> MsgGenerator[None]:
    """Refuse a field that no detector reads. Raises PlanArgumentError listing the known ones."""
    known: set[str] = set()
    for det in detectors:
        description = yield from run_coroutine(lambda det=det: maybe_await(det.describe()))
        known.update(description)
    for field in fields:
        if field not in known:
            raise PlanArgumentError(
                f"detector field {field!r} is not read by {[d.name for d in detectors]}; "
                f"known fields: {sorted(known)}"
            )


def motor_tolerance(motor, default: float) -> MsgGenerator[float]:
    """The motor's retry deadband (.RDBD) if it exposes one, else ``default`` (egu).

    ophyd-async ``Motor`` names the field ``deadband``; classic ``EpicsMotor``
    ``retry_deadband``.
    """
    deadband = getattr(motor, "deadband", None) or getattr(motor, "retry_deadband", None)
    if deadband is None:
        return default
    value = float((yield from bps.rd(deadband)))
    return value if value > 0 else default
