"""Shared pieces of the devices system tests (RunEngine, both beamline flavours)."""

from __future__ import annotations

import time
from contextlib import contextmanager

from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.plan_stubs import ensure_connected

from devices import load_beamline_config, make_beamline, make_ophyd_beamline


def run_in_loop(make_awaitable, timeout: float = 60.0):
    """Create and await ``make_awaitable()`` inside the bluesky event loop."""

    async def go():
        return await make_awaitable()

    return call_in_bluesky_event_loop(go(), timeout=timeout)


def connect_async_beamline(RE: RunEngine, config_path, timeout_s: float = 20.0):
    """ophyd-async beamline, connected with polling up to ``timeout_s`` (IOC may be starting)."""
    bl = make_beamline(load_beamline_config(config_path))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            RE(ensure_connected(bl, timeout=2.0))
            return bl
        except Exception:
            if time.monotonic() > deadline:
                raise


def connect_classic_beamline(config_path, timeout_s: float = 20.0):
    return make_ophyd_beamline(load_beamline_config(config_path), timeout_s=timeout_s)


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


@contextmanager
def beamline_for(flavour: str, RE: RunEngine, config_path):
    """The ``"ophyd_async"`` or ``"classic"`` beamline; classic PVs are released on exit."""
    if flavour == "ophyd_async":
        yield connect_async_beamline(RE, config_path)
        return
    bl = connect_classic_beamline(config_path)
    try:
        yield bl
    finally:
        bl.destroy()
