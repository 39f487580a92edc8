"""Channel Access connection state of devices, both flavours: lost, and back.

An IOC restart cuts every channel of its devices. What fails then depends on the flavour
(ophyd-async: a ``PutError`` "Virtual circuit disconnect" at once; classic ophyd: a move
that "ends" on reconnect, short of its target; a trigger that completes on the restarted
IOC's idle state) and on timing, so a caller cannot tell a disconnect from the error alone.
:class:`ConnectionWatch` tells it:

- ``epoch`` counts losses: it goes up when a watched device's sentinel channel (its first
  CA signal) reports a disconnect, so "did anything drop since I started this step?" is
  ``watch.epoch != epoch_at_start``, even when the channel is back by the time the step
  fails (classic ophyd reconnects before it reports the move);
- ``down()`` lists the devices with any channel not connected now (every CA signal of the
  device is checked, since channels of a restarted IOC reconnect one by one);
- ``wait_connected(timeout_s)`` waits until none is down, or raises
  :class:`~devices.errors.DeviceConnectError` naming the PVs still missing.

ophyd-async signals are watched through aioca (the CA layer of ``ophyd_async.epics``): a
``camonitor(..., notify_disconnect=True)`` on each sentinel, ``Channel.connected()`` for the
rest. Classic ophyd signals through their ``meta`` subscription (``connected``) and
``connected``. Create, poll and close the watch in the bluesky event loop (aioca's channels
belong to it); classic callbacks may come from any thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devices.errors import DeviceConnectError

POLL_S = 0.1  # how often wait_connected looks again


@dataclass
class _Watched:
    name: str
    pvs: list[str] = field(default_factory=list)  # ophyd-async: every CA PV of the device
    signals: list[Any] = field(default_factory=list)  # classic: every EpicsSignalBase
    subscription: Any = None  # sentinel subscription: aioca Subscription / (signal, cid)


class ConnectionWatch:
    """Connection state of a set of devices (ophyd-async or classic ophyd, mixed)."""

    def __init__(self) -> None:
        self._devices: list[_Watched] = []
        self._lock = threading.Lock()
        self._epoch = 0
        self.losses: list[tuple[float, str]] = []  # (unix time, device name), all of them

    @classmethod
    def of(cls, devices: Iterable[Any]) -> ConnectionWatch:
        """Watch ``devices`` (call in the bluesky event loop). Devices with no CA signal are
        ignored (soft signals, simulated ophyd devices)."""
        watch = cls()
        for device in devices:
            watched = _watch_async(device, watch) or _watch_classic(device, watch)
            if watched is not None:
                watch._devices.append(watched)
        return watch

    @property
    def names(self) -> list[str]:
        return [d.name for d in self._devices]

    @property
    def epoch(self) -> int:
        """Number of disconnects seen so far (any watched device)."""
        with self._lock:
            return self._epoch

    def lost(self, name: str) -> None:
        """Record that device ``name`` lost its connection (called by the subscriptions)."""
        with self._lock:
            self._epoch += 1
            self.losses.append((time.time(), name))

    def down(self) -> list[str]:
        """Names of the watched devices with at least one channel not connected now."""
        return [d.name for d in self._devices if self._missing(d)]

    def missing_pvs(self) -> list[str]:
        return [pv for d in self._devices for pv in self._missing(d)]

    async def wait_connected(self, timeout_s: float) -> float:
        """Wait until every channel is connected; returns the seconds waited.

        Raises DeviceConnectError naming the devices and (up to 10) PVs still missing.
        """
        t0 = time.monotonic()
        while missing := self.missing_pvs():
            if time.monotonic() - t0 > timeout_s:
                raise DeviceConnectError(
                    f"{', '.join(self.down())} not reconnected within {timeout_s} s; "
                    f"{len(missing)} PVs missing, e.g. {missing[:10]}", missing)
            await asyncio.sleep(POLL_S)
        return time.monotonic() - t0

    def close(self) -> None:
        """Drop the subscriptions (idempotent)."""
        for d in self._devices:
            sub, d.subscription = d.subscription, None
            if sub is None:
                continue
            if isinstance(sub, tuple):
                signal, cid = sub
                signal.unsubscribe(cid)
            else:
                sub.close()

    @staticmethod
    def _missing(d: _Watched) -> list[str]:
        if d.signals:
            return [s.pvname for s in d.signals if not s.connected]
        from aioca._catools import get_channel  # not re-exported by aioca 2.1

        return [pv for pv in d.pvs if not get_channel(pv).connected()]


def _watch_async(device: Any, watch: ConnectionWatch) -> _Watched | None:
    try:
        from ophyd_async.core import Device, Signal, walk_devices
        from ophyd_async.epics.core._aioca import CaSignalBackend
    except ImportError:  # pragma: no cover - ophyd-async is a dependency
        return None
    if not isinstance(device, Device):
        return None
    pvs: list[str] = []
    for sig in walk_devices(device).values():
        backend = sig._connector.backend if isinstance(sig, Signal) else None
        if isinstance(backend, CaSignalBackend):
            pvs += [pv for pv in dict.fromkeys((backend.read_pv, backend.write_pv)) if pv]
    if not pvs:
        return None
    pvs = list(dict.fromkeys(pvs))
    watched = _Watched(device.name, pvs=pvs)
    from aioca import CANothing, camonitor

    def on_update(value) -> None:
        if isinstance(value, CANothing):
            watch.lost(watched.name)

    watched.subscription = camonitor(pvs[0], on_update, notify_disconnect=True)
    return watched


def _watch_classic(device: Any, watch: ConnectionWatch) -> _Watched | None:
    try:
        from ophyd.signal import EpicsSignalBase
    except ImportError:  # pragma: no cover - ophyd is a dependency
        return None
    if isinstance(device, EpicsSignalBase):
        signals = [device]
    elif hasattr(device, "walk_signals"):
        signals = [item.item for item in device.walk_signals()
                   if isinstance(item.item, EpicsSignalBase)]
    else:
        return None
    if not signals:
        return None
    watched = _Watched(device.name, signals=signals)
    state = {"up": True}

    def on_meta(*, connected: bool = True, **kwargs) -> None:
        if state["up"] and not connected:
            watch.lost(watched.name)
        state["up"] = connected

    sentinel = signals[0]
    watched.subscription = (sentinel, sentinel.subscribe(on_meta, event_type=sentinel.SUB_META,
                                                         run=False))
    return watched
