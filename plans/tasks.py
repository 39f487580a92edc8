"""Await agent coroutines from inside a plan without blocking the RunEngine's event loop.

bluesky replays the messages since the last checkpoint when a paused run resumes. A
``wait_for`` factory must therefore "work multiple times" (bluesky ``RunEngine._wait_for``):
``BackgroundCall`` starts its coroutine once and hands back the same task on every replay,
so a resumed run never asks the agent twice for the same point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bluesky import plan_stubs as bps
from bluesky.utils import MsgGenerator


class BackgroundCall:
    """A coroutine started at most once, in the RunEngine's loop, on first call."""

    def __init__(self, make_coroutine: Callable[[], Awaitable[Any]]):
        self._make_coroutine = make_coroutine
        self._task: asyncio.Future | None = None

    def __call__(self) -> asyncio.Future:
        if self._task is None:
            self._task = asyncio.ensure_future(self._make_coroutine())
        return self._task


def start(call: BackgroundCall) -> MsgGenerator[None]:
    """Start ``call`` in the RunEngine's loop and return at once."""

    async def _started() -> None:
        call()

    yield from bps.wait_for([_started])


def result(call: BackgroundCall, timeout_s: float | None = None) -> MsgGenerator[Any]:
    """Wait for ``call`` (starting it if needed) and return its result or raise its error."""
    (task,) = yield from bps.wait_for([call], timeout=timeout_s)
    return task.result()


def run_coroutine(make_coroutine: Callable[[], Awaitable[Any]]) -> MsgGenerator[Any]:
    """Run one coroutine to completion inside the plan and return its result."""
    return (yield from result(BackgroundCall(make_coroutine)))
