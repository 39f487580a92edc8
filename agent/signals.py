"""Stop requests from signals, safe however many arrive and whenever they do.

A Python signal handler runs in the main thread between two bytecodes, so it may interrupt
code that holds a lock. ``threading.Event.set`` takes the Event's lock: a second SIGTERM
arriving while the handler of the first is inside ``set`` (a parent dying sends a burst)
re-enters it and deadlocks the process. Here the handler only assigns a plain attribute,
which takes no lock and is idempotent, so any number of signals at any moment is harmless;
the loops that serve poll ``is_set()`` with a short timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """A stop request: ``set()`` from a signal handler or another thread, ``is_set()`` to poll.

    Duck-types the part of ``threading.Event`` the service loops use (``is_set``/``set``).
    ``signum`` is the first signal that asked for the stop (None if none did).
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None

    def set(self) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame) -> None:
        # only plain assignments: no lock, no I/O, no allocation worth the name
        if self.signum is None:
            self.signum = signum
        self.requested = True

    def install(self, signals: Iterable[int] = STOP_SIGNALS) -> StopFlag:
        """Make ``signals`` (SIGINT and SIGTERM by default) set this flag. Main thread only."""
        for sig in signals:
            signal.signal(sig, self._handle)
        return self
