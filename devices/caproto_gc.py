"""A narrow workaround for a re-entrancy race in caproto's threading client (1.3.0).

``caproto.threading.client.CallbackHandler.process`` copies its callback dict with
``list(self.callbacks.items())`` under an ``RLock``. Callbacks are held by weak reference,
and each weakref's finaliser pops its entry under the same lock. If the allocations of that
copy trigger a garbage collection that frees a callback's owner (an ophyd PV wrapper of a
destroyed device, kept in a reference cycle), the finaliser runs in the same thread,
re-enters the lock and shrinks the dict mid-copy: ``RuntimeError: dictionary changed size
during iteration``. CI hit it once while building ``ScalerCH`` (its PR21 channel's
access-rights callback, run at once on a connected PV). ``tests/test_caproto_gc.py``
reproduces it deterministically.

Collecting before PVs are created, and keeping the collector paused while they are, leaves no
such garbage to free during a copy; collecting after ``destroy`` frees it at a safe moment.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Collect garbage now, then keep Python's cyclic collector off until the block ends.

    Use around creating and connecting classic ophyd devices on the caproto control layer.
    The collector's previous state (on or off) is restored, also when the block raises.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
