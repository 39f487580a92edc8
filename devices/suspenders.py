"""Bluesky suspenders on ophyd-async signals.

bluesky's suspenders (``SuspendFloor`` etc.) speak the classic ophyd signal interface:
``subscribe(callback, event_type=None, run=True)`` calling ``callback(value=..., ...)``,
``clear_sub(callback)``, ``get()`` and ``name``. An ophyd-async signal has no ``get()`` and
delivers ``{name: Reading}`` dicts; without an adapter the suspender's callback raises,
the subscription closes and the scan never pauses (FIELD_NOTES).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.suspenders import SuspendFloor
from ophyd_async.core import Device, SignalR

SUB_VALUE = "value"


class ClassicSignalAdapter:
    """Classic ``subscribe``/``clear_sub``/``get`` on an ophyd-async ``SignalR``.

    Subscriptions are made in the bluesky event loop (ophyd-async needs its loop), so
    ``subscribe`` may be called from the user thread (``RE.install_suspender``) once a
    RunEngine exists. ``get()`` returns the last monitored value, or does a CA get when
    there is none yet and it is called outside the event loop.
    """

    SUB_VALUE = SUB_VALUE

    def __init__(self, signal: SignalR) -> None:
        self.signal = signal
        self._lock = threading.Lock()
        self._value: Any = None
        self._timestamp: float | None = None
        self._subs: dict[Callable, Callable] = {}

    @property
    def name(self) -> str:
        return self.signal.name

    def __repr__(self) -> str:
        return f"ClassicSignalAdapter({self.signal.name!r}, source={self.signal.source!r})"

    def get(self, **kwargs) -> Any:
        if self._timestamp is None and not _in_bluesky_loop():
            return call_in_bluesky_event_loop(self.signal.get_value(), timeout=10.0)
        return self._value

    def subscribe(self, callback: Callable, event_type: str | None = None, run: bool = True):
        """Call ``callback(value=, old_value=, timestamp=, sub_type=, obj=)`` on each update.

        The first update (the current value) is delivered only if ``run`` is true.
        """
        state = {"first": True}

        def on_reading(readings: dict) -> None:
            reading = readings[self.signal.name]
            with self._lock:
                old, self._value = self._value, reading["value"]
                self._timestamp = reading["timestamp"]
            first, state["first"] = state["first"], False
            if first and not run:
                return
            callback(value=reading["value"], old_value=old, timestamp=reading["timestamp"],
                     sub_type=SUB_VALUE, obj=self)

        self._subs[callback] = on_reading
        self._in_loop(self.signal.subscribe_reading, on_reading)
        return callback

    def clear_sub(self, callback: Callable, event_type: str | None = None) -> None:
        on_reading = self._subs.pop(callback, None)
        if on_reading is not None:
            self._in_loop(self.signal.clear_sub, on_reading)

    def _in_loop(self, fn: Callable, *args) -> None:
        if _in_bluesky_loop():
            fn(*args)
        else:
            async def call() -> None:
                fn(*args)

            call_in_bluesky_event_loop(call(), timeout=10.0)


def _in_bluesky_loop() -> bool:
    from bluesky.run_engine import _bluesky_event_loop  # the loop RunEngine() created

    try:
        return asyncio.get_running_loop() is _bluesky_event_loop
    except RuntimeError:
        return False


def suspend_on_beam_loss(
    ring_current: Device | SignalR | Any,
    floor_mA: float,
    *,
    resume_mA: float | None = None,
    sleep_s: float = 0.0,
    **kwargs,
) -> SuspendFloor:
    """A ``SuspendFloor`` that pauses a scan while the ring current is below ``floor_mA``.

    Args:
        ring_current: :class:`devices.beam.RingCurrent`, an ophyd-async ``SignalR`` (mA),
            or a classic ophyd signal (used as is).
        floor_mA: suspend when the current drops below this (mA), > 0.
        resume_mA: resume once at or above this (mA); default ``floor_mA``; >= floor_mA.
        sleep_s: wait after recovery before resuming (s), e.g. for optics to settle.
        kwargs: passed to ``SuspendFloor`` (``pre_plan``, ``post_plan``, ...).

    Install with ``RE.install_suspender(s)`` after creating the RunEngine.
    """
    if not floor_mA > 0:
        raise ValueError(f"floor_mA must be > 0 mA, got {floor_mA} mA")
    if resume_mA is not None and resume_mA < floor_mA:
        raise ValueError(f"resume_mA {resume_mA} mA must be >= floor_mA {floor_mA} mA")
    signal = getattr(ring_current, "current", ring_current)
    if isinstance(signal, SignalR):
        signal = ClassicSignalAdapter(signal)
    return SuspendFloor(
        signal,
        floor_mA,
        resume_thresh=resume_mA,
        sleep=sleep_s,
        tripped_message=kwargs.pop(
            "tripped_message", f"ring current below {floor_mA} mA (beam lost)"
        ),
        **kwargs,
    )
