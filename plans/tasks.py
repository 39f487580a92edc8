"""Await agent coroutines from inside a plan without blocking the RunEngine's event loop.

bluesky replays the messages since the last checkpoint when a paused run resumes. A
``wait_for`` factory must therefore "work multiple times" (bluesky ``RunEngine._wait_for``):
``BackgroundCall`` starts its coroutine once and hands back the same task on every replay,
so a resumed run never asks the agent twice for the same point. A ``wait_for`` cut by a hard
pause or a suspender answers the plan with None on resume, so results are taken from the
call itself, never from the RunEngine's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bluesky import plan_stubs as bps
from bluesky.run_engine import WaitForTimeoutError
from bluesky.utils import MsgGenerator


class CallTimeoutError(TimeoutError):
    """A background call did not finish within its timeout; it has been cancelled."""


class BackgroundCall:
    """A coroutine started at most once, in the RunEngine's loop, on first call."""

    def __init__(self, make_coroutine: Callable[[], Awaitable[Any]]):
        self._make_coroutine = make_coroutine
        self._task: asyncio.Future | None = None
        self._cancelled = False

    def __call__(self) -> asyncio.Future:
        if self._task is None:
            self._task = asyncio.ensure_future(self._make_coroutine())
        return self._task

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def cancelled(self) -> bool:
        """True once ``cancel`` was called (asyncio only marks the task at its next step)."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel the call if it is still running (in the RunEngine's loop thread)."""
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


def start(call: BackgroundCall) -> MsgGenerator[None]:
    """Start ``call`` in the RunEngine's loop and return at once."""

    async def _started() -> None:
        call()

    yield from bps.wait_for([_started])


def result(call: BackgroundCall, timeout_s: float | None = None) -> MsgGenerator[Any]:
    """Wait for ``call`` (starting it if needed) and return its result or raise its error.

    Raises CallTimeoutError after ``timeout_s`` s, with the call cancelled.
    """
    try:
        yield from bps.wait_for([call], timeout=timeout_s)
    except WaitForTimeoutError:
        call.cancel()
        raise CallTimeoutError(f"not done within {timeout_s} s") from None
    return call().result()


def run_coroutine(make_coroutine: Callable[[], Awaitable[Any]]) -> MsgGenerator[Any]:
    """Run one coroutine to completion inside the plan and return its result."""
    return (yield from result(BackgroundCall(make_coroutine)))
