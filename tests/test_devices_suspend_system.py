"""Beam loss pauses a scan and a refill resumes it (SuspendFloor on the ring current)."""

from __future__ import annotations

import threading
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from ophyd import EpicsSignal

from devices.suspenders import ClassicSignalAdapter, suspend_on_beam_loss
from tests.devices_system_helpers import beamline_for, wait_until

pytestmark = pytest.mark.system

N_POINTS = 12
DUMPED_S = 1.0  # how long the beam stays off
RESUME_SLEEP_S = 0.2


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)


@pytest.mark.parametrize("flavour", ["ophyd_async", "classic"])
def test_dump_pauses_and_refill_resumes(RE, sim_beamline, flavour):
    with beamline_for(flavour, RE, sim_beamline.config_path) as bl:
        dump_refill_and_check(RE, bl, flavour)


def dump_refill_and_check(RE, bl, flavour) -> None:
    prefix = bl.config.prefix
    dump = EpicsSignal(f"{prefix}RING:DUMP", name="dump")
    refill = EpicsSignal(f"{prefix}RING:REFILL", name="refill")
    dump.wait_for_connection(timeout=10)
    refill.wait_for_connection(timeout=10)
    try:
        _dump_refill_and_check(RE, bl, flavour, dump, refill)
    finally:
        dump.destroy()
        refill.destroy()


def _dump_refill_and_check(RE, bl, flavour, dump, refill) -> None:

    suspender = suspend_on_beam_loss(bl.ring_current, 100.0, sleep_s=RESUME_SLEEP_S)
    assert isinstance(suspender._sig, ClassicSignalAdapter) == (flavour == "ophyd_async")
    RE.install_suspender(suspender)
    events: list[tuple[float, dict]] = []
    times: dict[str, float] = {}
    errors: list[BaseException] = []

    def beam_operator() -> None:  # another control room: dumps after 3 points, refills later
        try:
            wait_until(lambda: len(events) >= 3, 20, "3 events before the dump")
            times["dump"] = time.time()
            dump.put(1, wait=True)
            time.sleep(DUMPED_S)
            times["refill"] = time.time()
            refill.put(1, wait=True)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    operator = threading.Thread(target=beam_operator, daemon=True)
    RE(bps.mv(bl.scaler.preset_time, 0.01))
    try:
        operator.start()
        RE(bp.count([bl.scaler, bl.ring_current], num=N_POINTS, delay=0.05),
           lambda name, doc: name == "event" and events.append((doc["time"], doc["data"])))
    finally:
        RE.remove_suspender(suspender)
        operator.join(timeout=20)
        refill.put(1, wait=True)
    assert not errors, errors
    # bluesky rewinds to the last checkpoint on suspension and re-takes the point that was
    # in progress; if that point had already been saved it appears twice.
    assert len(events) in (N_POINTS, N_POINTS + 1)
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    during = [t for t, _ in events if times["dump"] + 0.1 < t < times["refill"]]
    assert during == [], "events recorded while the beam was dumped"
    after = [(t, d) for t, d in events if t > times["refill"]]
    assert after, "scan did not resume after the refill"
    assert after[0][0] >= times["refill"] + RESUME_SLEEP_S  # waited the settle time
    # every recorded point had beam: the point cut by the dump was re-taken after resume
    assert all(d["ring_current"] > 100.0 and d["i0"] > 1000 for _, d in events)
