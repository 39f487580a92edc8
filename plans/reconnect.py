"""Points that survive an IOC restart: lost Channel Access is waited out, verified and redone.

bluesky's suspenders cannot carry a run through a disconnect here: the move or trigger cut by
it fails its status at once (ophyd-async: ``PutError`` "Virtual circuit disconnect"), or on
reconnect (classic ophyd: a move "done" short of its target), and a failed status is thrown
into the plan whatever a suspender does. So the plan handles it, per point
(:meth:`Reconnector.point`):

1. the point (move, verify, trigger, read) runs with a
   :class:`~devices.connection.ConnectionWatch` on its devices; the event is saved only if
   no device lost its connection since the point started (a classic trigger can "complete"
   on the restarted IOC's idle state; its counts would be nonsense);
2. a failure while a device lost its connection (or naming a disconnect) pauses the point
   (so does a loss seen between points, before the next one starts):
   a warning is logged, the plan waits for every channel with a bound
   (``timeout_s``, default 60 s; then :class:`ReconnectTimeoutError`), and for the cut
   statuses to finish, so their late failures land now and not in the redo;
3. it verifies what the IOC came back with: the motor readbacks, and each device's
   configuration against the snapshot taken at the start of the run (an IOC without autosave
   comes back with defaults, e.g. the scaler's TP at 1 s); every change is logged as a
   warning and recorded, with the outage, in the run's ``reconnects`` stream, followed by a
   checkpoint;
4. the whole point is redone from its move (the cut move is never reported done), at most
   ``max_recoveries`` times per point.

Any other failure propagates unchanged. A pause or a suspender meanwhile works as usual:
nothing of the point was saved, so a rewind re-takes it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from bluesky import plan_stubs as bps
from bluesky.protocols import Triggerable
from bluesky.utils import (
    FailedStatus,
    MsgGenerator,
    RunEngineControlException,
    separate_devices,
)

from devices.connection import ConnectionWatch
from devices.errors import DeviceConnectError
from plans import tasks
from plans.errors import PlanError

RECONNECT_TIMEOUT_S = 60.0  # FIELD_NOTES: reconnects took 2 to 11 s
MAX_RECOVERIES = 3  # per point
GRACE_S = 0.3  # s: a disconnect callback may arrive just after the error it caused
STREAM = "reconnects"
logger = logging.getLogger(__name__)


class ConnectionLostError(ConnectionError, PlanError):
    """A device lost its connection while a point was measured; nothing was saved."""


class ReconnectTimeoutError(TimeoutError, PlanError):
    """Devices did not reconnect within the bound; names them and the missing PVs."""


class ReconnectRecorder:
    """A bluesky ``Readable`` whose reading is the latest recovery (``reconnects`` stream).

    Fields: ``reconnect_point`` (index of the point redone, from 0), ``reconnect_devices``
    (those that lost their connection), ``reconnect_cause`` (the error that stopped the
    point), ``reconnect_outage_s`` (first loss to all channels back), ``reconnect_positions``
    (motor readbacks after the reconnect), ``reconnect_settings_changed`` (configuration
    that differs from before the loss; empty if none).
    """

    FIELDS = {"point": "integer", "devices": "string", "cause": "string", "outage_s": "number",
              "positions": "string", "settings_changed": "string"}

    def __init__(self, name: str = "reconnect") -> None:
        self.name = name
        self.parent = None
        self._reading: dict = {}

    def record(self, **values: Any) -> None:
        now = time.time()
        self._reading = {f"{self.name}_{k}": {"value": values[k], "timestamp": now}
                         for k in self.FIELDS}

    @property
    def hints(self) -> dict:
        return {"fields": []}

    def read(self) -> dict:
        return dict(self._reading)

    def describe(self) -> dict:
        return {f"{self.name}_{k}": {"dtype": dtype, "shape": [], "source": "beamagent:plan",
                                     **({"units": "s"} if k == "outage_s" else {})}
                for k, dtype in self.FIELDS.items()}


class Reconnector:
    """Per-point handling of lost Channel Access for the devices of one run (see module doc).

    ``start()`` once in the run (it snapshots the devices' configuration), then ``point()``
    for each point, and ``close()`` at the end. ``watched``: further devices whose connection
    is watched but that are not triggered or read themselves (the camera behind a
    ``plans.objective.FluxDensity``, which is not an ophyd device).
    """

    def __init__(self, devices: Sequence[Any], motors: Sequence[Any],
                 timeout_s: float = RECONNECT_TIMEOUT_S, max_recoveries: int = MAX_RECOVERIES,
                 watched: Sequence[Any] = ()):
        self.devices = separate_devices([*devices, *motors])
        self.watched = [d for d in watched if all(d is not x for x in self.devices)]
        self.motors = list(motors)
        self.timeout_s = timeout_s
        self.max_recoveries = max_recoveries
        self.recorder = ReconnectRecorder()
        self.watch: ConnectionWatch | None = None
        self.settings: dict[str, Any] = {}
        self.recoveries = 0
        self._verified = 0  # the watch's epoch when the devices were last verified

    def start(self) -> MsgGenerator[None]:
        async def begin() -> ConnectionWatch:
            return ConnectionWatch.of([*self.devices, *self.watched])

        self.watch = yield from tasks.run_coroutine(begin)
        self._verified = self.watch.epoch
        self.settings = yield from tasks.run_coroutine(lambda: read_settings(self.devices))

    def close(self) -> MsgGenerator[None]:
        watch, self.watch = self.watch, None
        if watch is not None:
            async def end() -> None:
                watch.close()

            yield from tasks.run_coroutine(end)

    def point(self, move: Callable[[list], MsgGenerator[Any]], index: int
              ) -> MsgGenerator[dict]:
        """``move(statuses)`` (appending its statuses), then trigger and read every device
        into one ``primary`` event; redone after a recovered disconnect. Returns the
        readings."""
        for attempt in range(self.max_recoveries + 1):
            statuses: list = []
            epoch = self.watch.epoch
            if epoch != self._verified:  # lost (and maybe back) since the last point
                yield from self.recover(None, statuses, index, self._verified)
                epoch = self.watch.epoch
            try:
                yield from move(statuses)
                return (yield from self.measure(epoch))
            except RunEngineControlException:
                raise
            except Exception as exc:
                if attempt == self.max_recoveries or not (yield from self._lost(exc, epoch)):
                    raise
                yield from self.recover(exc, statuses, index, epoch)
        raise AssertionError("unreachable")  # pragma: no cover

    def measure(self, epoch: int, name: str = "primary") -> MsgGenerator[dict]:
        """``bps.trigger_and_read(devices)``, but the event is dropped, not saved, if a
        device lost its connection since ``epoch`` (raises ConnectionLostError)."""
        group = f"trigger-{time.monotonic_ns()}"
        triggered = [d for d in self.devices if isinstance(d, Triggerable)]
        for device in triggered:
            yield from bps.trigger(device, group=group)
        if triggered:
            yield from bps.wait(group=group)
        yield from bps.create(name)
        readings: dict = {}
        try:
            for device in self.devices:
                readings.update((yield from bps.read(device)) or {})
            if self.watch.epoch != epoch:
                raise ConnectionLostError(
                    f"{self._lost_names(epoch)} lost Channel Access during the measurement")
        except BaseException:
            yield from bps.drop()
            raise
        yield from bps.save()
        return readings

    def recover(self, exc: Exception | None, statuses: list, index: int, epoch: int
                ) -> MsgGenerator[None]:
        """Wait for the reconnection and the cut statuses, verify, record (see module doc).

        ``exc`` is the error that stopped the point, None for a loss between points."""
        lost = self._lost_names(epoch) or ", ".join(self.watch.down()) or "a device"
        cause = _describe(exc) if exc is not None else "lost between points"
        logger.warning("point %d: %s lost Channel Access (%s); pausing the point: waiting up "
                       "to %s s for the reconnection, then verifying and redoing it",
                       index, lost, cause, self.timeout_s)
        deadline = time.monotonic() + self.timeout_s
        yield from self._wait(lambda: self.watch.wait_connected(_left(deadline)), deadline)
        yield from self._wait(lambda: statuses_done(statuses, _left(deadline)), deadline)
        first = min((t for t, _ in self.watch.losses[epoch:]), default=time.time())
        outage = time.time() - first
        positions = []
        for motor in self.motors:
            value = yield from bps.rd(motor)
            positions.append(f"{motor.name}={value}")
        self._verified = self.watch.epoch
        now = yield from tasks.run_coroutine(lambda: read_settings(self.devices))
        changed = changed_settings(self.settings, now)
        self.settings = now
        logger.warning("point %d: reconnected after %.1f s; readbacks %s; redoing the point",
                       index, outage, ", ".join(positions))
        if changed:
            logger.warning("point %d: settings changed across the reconnect (the IOC did not "
                           "restore them): %s", index, "; ".join(changed))
        self.recoveries += 1
        lost = self._lost_names(epoch) or lost  # all of them, now that they are back
        self.recorder.record(point=index, devices=lost, cause=cause, outage_s=outage,
                             positions=", ".join(positions), settings_changed="; ".join(changed))
        yield from bps.trigger_and_read([self.recorder], name=STREAM)
        yield from bps.checkpoint()

    def _lost(self, exc: Exception, epoch: int) -> MsgGenerator[bool]:
        """Was ``exc`` caused by lost Channel Access? Looks again after GRACE_S.

        A put on a channel that is going away can fail before the loss is seen; another
        status of the point, cut by the same loss, may then fail during the grace sleep and
        be thrown in here by the RunEngine: that one is evidence too, not a new error."""
        if self.watch.epoch != epoch or self.watch.down() or _names_disconnect(exc):
            return True
        try:
            yield from bps.sleep(GRACE_S)
        except FailedStatus as late:
            logger.info("while deciding whether %s was a disconnect: %s", _describe(exc),
                        _describe(late))
            return (self.watch.epoch != epoch or bool(self.watch.down())
                    or _names_disconnect(late))
        return self.watch.epoch != epoch or bool(self.watch.down())

    def _lost_names(self, epoch: int) -> str:
        return ", ".join(dict.fromkeys(name for _, name in self.watch.losses[epoch:]))

    def _wait(self, make_coroutine, deadline: float) -> MsgGenerator[None]:
        """``wait_for`` the coroutine; a late failure of a cut status thrown in meanwhile is
        logged and the wait goes on, until ``deadline``."""
        while True:
            try:
                yield from tasks.run_coroutine(make_coroutine)
                return
            except RunEngineControlException:
                raise
            except DeviceConnectError as exc:
                raise ReconnectTimeoutError(str(exc)) from exc
            except FailedStatus as exc:  # a status of the cut point, failing late
                if time.monotonic() > deadline:
                    raise ReconnectTimeoutError(
                        f"recovery not done within {self.timeout_s} s: {exc!r}") from exc
                logger.info("while waiting for the reconnection: %s", _describe(exc))


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


async def statuses_done(statuses: Sequence[Any], timeout_s: float) -> None:
    """Wait until every status is done (either way), then a little longer: the RunEngine
    learns of a failure through a callback scheduled just after ``done``."""
    t0 = time.monotonic()
    while not all(getattr(s, "done", True) for s in statuses):
        if time.monotonic() - t0 > timeout_s:
            return
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)


async def read_settings(devices: Sequence[Any]) -> dict[str, Any]:
    """Every device's ``read_configuration()`` values by key (classic ones in a thread)."""
    values: dict[str, Any] = {}
    for device in devices:
        read = getattr(device, "read_configuration", None)
        if read is None:
            continue
        reading = await read() if inspect.iscoroutinefunction(read) else \
            await asyncio.to_thread(read)
        if inspect.isawaitable(reading):  # a wrapper of an ophyd-async device (FluxDensity)
            reading = await reading
        values.update({k: v["value"] for k, v in reading.items()})
    return values


def changed_settings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each key of ``before`` whose value differs in ``after``."""
    return [f"{k}: {v!r} -> {after.get(k, '<missing>')!r}"
            for k, v in before.items() if not _same(v, after.get(k, _MISSING))]


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)
    if isinstance(a, np.ndarray | list | tuple) or isinstance(b, np.ndarray | list | tuple):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    return a == b


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        status = exc.args[0] if exc.args else None  # FailedStatus(status) from the cause
        exc = exc.__cause__ or exc.__context__ or _status_exception(status)


def _status_exception(status: Any) -> BaseException | None:
    try:
        return status.exception(timeout=0) if hasattr(status, "exception") else None
    except Exception:
        return None


def _names_disconnect(exc: BaseException) -> bool:
    return any(word in str(e).lower() for e in _chain(exc)
               for word in ("disconnect", "lost channel access"))


def _describe(exc: BaseException) -> str:
    """The innermost error of ``exc``'s chain, as ``Type: message`` (FailedStatus unwrapped)."""
    inner = list(_chain(exc))[-1]
    return f"{type(inner).__name__}: {inner}"[:300]
