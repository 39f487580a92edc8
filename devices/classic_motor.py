"""Classic ophyd motor: stock ``EpicsMotor`` with verified moves and worded limit errors."""

from __future__ import annotations

import contextlib
import math
import threading
import time

from ophyd import Component as Cpt
from ophyd import EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus, StatusBase
from ophyd.utils import InvalidState

from devices.errors import LimitError, MoveError, limit_message


class VerifiedEpicsMotor(EpicsMotor):
    """``EpicsMotor`` whose ``set`` status fails with MoveError unless the readback ends
    within ``tolerance`` (EGU; None: the record's RDBD) of the target, or the move was
    stopped with ``stop(success=True)`` (a RunEngine pause or suspension). A move during
    which the IOC disconnects fails at once with MoveError ("... cut: lost Channel Access")."""

    retry_deadband = Cpt(EpicsSignalRO, ".RDBD", kind="omitted")
    # string=True: read EGU as text whether the IOC serves DBF_STRING or a char waveform
    # (an early sim revision served a char waveform, which the stock Cpt reads as int16s).
    motor_egu = Cpt(EpicsSignal, ".EGU", kind="config", string=True, auto_monitor=True)

    def __init__(self, prefix: str = "", *, name: str, tolerance: float | None = None, **kw):
        super().__init__(prefix, name=name, **kw)
        self.tolerance = tolerance
        # Set by stop(success=True) for the current move only; set() replaces it.
        self._stopped_ok = threading.Event()
        self._starting = threading.local()  # .active: in set(), starting the stock move

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
        stopped_ok = self._stopped_ok = threading.Event()  # fresh flag for this move
        egu = self.motor_egu.get()  # monitored: no CA round trip
        # The stock move fails the previous move's MoveStatus if it is still pending (a move
        # cut by an IOC restart: until its timeout), and that status's failure handling
        # calls stop() from its own thread, racing this move: a STOP that reaches the IOC
        # after this move's VAL (the move ends where it started), and a _done_moving(False)
        # that fails this move's status or, run between the stock move's _reset_sub and
        # subscribe, drops it (never done: a timeout). Retire it quietly first.
        self._retire_pending(f"superseded by a move to {new_position} {egu}")
        self._starting.active = True  # see position
        try:
            inner = super().set(new_position, **kwargs)
        except Exception:  # e.g. the VAL put on a lost channel: the stock status is orphaned
            self._retire_pending(f"move to {new_position} {egu} not started")
            raise
        finally:
            self._starting.active = False
        # A failed move stops the motor through ``inner`` (stock MoveStatus), never through
        # ``outer``: that one fails after the motion ended, or when the IOC is gone.
        outer = DeviceStatus(self, call_stop_on_failure=False)

        def _moved(status) -> None:
            # Verify off the CA callback thread: the check does a blocking CA get.
            threading.Thread(
                target=self._finish, args=(status, outer, new_position, stopped_ok),
                daemon=True,
            ).start()

        def _disconnected(*, connected: bool = True, **kw) -> None:
            if not connected:
                message = (f"move of {self.name} to {new_position} {egu} cut: lost Channel "
                           f"Access to {self.motor_done_move.pvname}")
                _fail(outer, MoveError(message))  # first: _moved then finds outer done
                self._abandon(inner, message)  # no STOP to an IOC that is gone, nor later

        # A move whose IOC goes away is not done, whatever DMOV says on reconnect (a
        # restarted IOC reports DMOV=1 wherever it restored the motor): fail it at once.
        cid = self.motor_done_move.subscribe(_disconnected, event_type="meta", run=False)
        outer.add_callback(lambda status: self.motor_done_move.unsubscribe(cid))
        inner.add_callback(_moved)
        if not self.motor_done_move.connected:  # lost before the subscription was made
            _disconnected(connected=False)
        return outer

    @property
    def position(self):
        """The readback position (stock: DisconnectedError while any channel is down).

        While this motor starts a move, the last known position instead: the stock
        MoveStatus reads ``position`` again after starting its timeout thread, so a
        disconnect at that moment would leave a status nobody holds, whose timeout later
        calls stop() on this motor, in the middle of whatever move runs then."""
        if getattr(self._starting, "active", False):
            return self._position
        return super().position

    def _retire_pending(self, reason: str) -> None:
        """Abandon every stock MoveStatus still waiting for this motor's DMOV."""
        for callback in list(self._unwrapped_callbacks[self._SUB_REQ_DONE].values()):
            status = getattr(callback, "__self__", None)
            if isinstance(status, StatusBase):
                self._abandon(status, reason)

    def _abandon(self, inner: StatusBase, reason: str) -> None:
        """Fail the stock MoveStatus ``inner`` of a move that is over for us (cut by a
        disconnect, superseded, or never started), if still pending, without the stop()
        that its failure would call, and detach it from the motor's DMOV handling so that no
        later ``_done_moving`` reaches it. Its ``_moved`` callback, if any, then finds
        ``outer`` done, or fails it."""
        self.clear_sub(inner._finished, event_type=self._SUB_REQ_DONE)
        if inner.done:
            return
        inner._call_stop_on_failure = False  # DeviceStatus(call_stop_on_failure=...) flag
        _fail(inner, MoveError(f"move of {self.name}: {reason}"))

    def stop(self, *, success: bool = False) -> None:
        """Stop the motor; with ``success=True`` the current move finishes without verifying.

        bluesky pauses and suspensions call ``stop(success=True)`` on every device moved
        in the run and re-issue the move on resume: the interrupted move must then report
        success (as the stock EpicsMotor and ophyd-async's Motor do), not fail the run
        because the readback is short of the target. ``stop()`` (success=False) still
        fails the move with MoveError.
        """
        if success:
            self._stopped_ok.set()  # before super(): it finishes the inner status at once
        super().stop(success=success)

    def _move_timeout(self, target: float) -> float:
        velocity = self.velocity.get()
        if not velocity > 0:
            raise MoveError(f"{self.name}: VELO is {velocity}, cannot move")
        distance = abs(target - (self.position if self.position is not None else target))
        return distance / velocity + 2 * self.acceleration.get() + 10.0

    def _finish(self, inner, outer: DeviceStatus, target: float,
                stopped_ok: threading.Event) -> None:
        if outer.done:  # already failed: the IOC went away during the move
            return
        if stopped_ok.is_set() and inner.success:
            _finished(outer)  # stopped by a pause/suspension: no verification
            return
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
            # A pause may come while settling (a stale DMOV pair ended the inner status).
            if not abs(readback - target) <= tol and not stopped_ok.is_set():
                raise MoveError(
                    f"move of {self.name} to {target} {egu} ended at readback {readback} "
                    f"{egu}, off by {abs(readback - target):.6g} {egu}; tolerance {tol} {egu}"
                )
        except Exception as exc:  # any failure, CA timeouts included, fails the status
            _fail(outer, exc)
        else:
            _finished(outer)

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


def _fail(status: DeviceStatus, exc: Exception) -> None:
    """Fail ``status`` unless it is already done (a disconnect and a verification race)."""
    with contextlib.suppress(InvalidState):
        status.set_exception(exc)


def _finished(status: DeviceStatus) -> None:
    with contextlib.suppress(InvalidState):
        status.set_finished()
