"""Scaler, ring and shutter over real Channel Access (caproto threading client)."""

from __future__ import annotations

import time

import pytest
from caproto.threading.client import Context

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def ca(sim_beamline):
    ctx = Context()
    cache = {}

    def pv(suffix: str):
        if suffix not in cache:
            cache[suffix], = ctx.get_pvs(sim_beamline.pv(suffix))
            cache[suffix].wait_for_connection(timeout=10)
        return cache[suffix]

    yield pv
    ctx.disconnect()


def value(pv):
    return pv.read().data[0]


def count(ca, preset_s: float) -> float:
    """One count of ``preset_s``; returns the seconds the put to CNT took to complete."""
    ca("SCALER1.TP").write(preset_s, wait=True, timeout=5)
    t0 = time.monotonic()
    ca("SCALER1.CNT").write(1, wait=True, timeout=preset_s + 5)
    return time.monotonic() - t0


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_channel_names_from_config(ca, sim_beamline):
    for ch in sim_beamline.config.scaler.channels:
        assert value(ca(f"SCALER1.NM{ch.number}")) == ch.name.encode()
    assert value(ca("SCALER1.FREQ")) == sim_beamline.config.scaler.clock_hz


def test_count_completes_after_preset_time(ca, sim_beamline):
    nacq = value(ca("SCALER1:NACQ"))
    elapsed = count(ca, 0.2)
    assert 0.2 <= elapsed < 1.0  # counts TP, not some fixed time; slack for a busy machine
    assert value(ca("SCALER1.CNT")) == 0  # back to Done
    assert value(ca("SCALER1:NACQ")) == nacq + 1
    assert value(ca("SCALER1.S1")) == pytest.approx(0.2 * sim_beamline.config.scaler.clock_hz)
    assert value(ca("SCALER1.T")) == pytest.approx(0.2)
    i0 = value(ca("SCALER1.S2"))
    flux = sim_beamline.full_config.simulation.flux.i0_cps * 0.2
    ring = value(ca("RING:CURRENT")) / sim_beamline.full_config.simulation.ring.nominal_ma
    assert abs(i0 - flux * ring) < 6 * (flux**0.5)  # Poisson, 6 sigma


def test_shutter_closed_gives_dark_counts_only(ca):
    ca("SHUTTER").write(0, wait=True, timeout=5)
    try:
        wait_for(lambda: value(ca("SHUTTER:STATUS")) == 0)
        count(ca, 0.1)
        assert value(ca("SCALER1.S2")) < 20 and value(ca("SCALER1.S3")) < 20  # dark: 0.5 mean
    finally:
        ca("SHUTTER").write(1, wait=True, timeout=5)
        wait_for(lambda: value(ca("SHUTTER:STATUS")) == 1)
    count(ca, 0.1)
    assert value(ca("SCALER1.S2")) > 1000


def test_ring_dump_and_refill(ca, sim_beamline):
    nominal = sim_beamline.full_config.simulation.ring.nominal_ma
    assert value(ca("RING:CURRENT")) == pytest.approx(nominal, rel=0.01)
    ca("RING:DUMP").write(1, wait=True, timeout=5)
    try:
        assert value(ca("RING:CURRENT")) == 0.0
        count(ca, 0.05)
        assert value(ca("SCALER1.S2")) < 20  # counts scale with the ring current
    finally:
        ca("RING:REFILL").write(1, wait=True, timeout=5)
    assert value(ca("RING:CURRENT")) == pytest.approx(nominal, rel=0.01)


def test_nacq_posted_after_all_channels(ca):
    """A monitor on NACQ sees S2 already updated (devices use it to avoid stale reads)."""
    seen = []

    def on_nacq(sub, response):
        seen.append((int(response.data[0]), value(ca("SCALER1.S1"))))

    ca("SCALER1.TP").write(0.01, wait=True, timeout=5)
    sub = ca("SCALER1:NACQ").subscribe()
    sub.add_callback(on_nacq)
    wait_for(lambda: len(seen) == 1)
    ca("SCALER1.TP").write(0.02, wait=True, timeout=5)
    ca("SCALER1.CNT").write(1, wait=True, timeout=5)
    wait_for(lambda: len(seen) == 2)
    assert seen[1][0] == seen[0][0] + 1 and seen[1][1] == 0.02 * 1e7
    sub.clear()
