"""align on the simulated optics over Channel Access, both device flavours: the camera's
NDStats reduced to flux density, a detuned KB pair re-aligned, no evaluation lost."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine

from plans.align import align
from plans.objective import FluxDensity, measure_dark
from tests.devices_system_helpers import beamline_for

pytestmark = pytest.mark.system

DOFS = ("vkb_pitch", "vkb_height", "hkb_pitch")
DETUNE = {"vkb_pitch": 4.0, "vkb_height": -60.0, "hkb_pitch": -10.0}  # urad, um, urad


def _around(cfg, centre, half):
    """(low, high) of centre +- half, inside the motor's soft limits."""
    return max(cfg.low_limit, centre - half), min(cfg.high_limit, centre + half)


def _value(RE, det):
    reading = RE(_read(det)).plan_result
    return reading[det.name]["value"], reading[f"{det.name}_failure"]["value"]


def _read(det):
    yield from bps.trigger(det, wait=True)
    return (yield from bps.read(det))


@pytest.mark.parametrize("flavour", ["ophyd_async", "classic"])
def test_align_recovers_a_detuned_kb_pair(sim_beamline, flavour):
    RE = RunEngine(call_returns_result=True)
    with beamline_for(flavour, RE, sim_beamline.config_path) as bl:
        motors = [bl.motor(name) for name in DOFS]
        aligned = {m.name: RE(bps.rd(m)).plan_result for m in motors}
        dark = RE(measure_dark(bl.beam_camera, bl.shutter)).plan_result
        assert 0 < dark < 100  # counts/s/pixel
        det = FluxDensity(bl.beam_camera, sim_beamline.config.element("beam_camera"), dark)
        j_aligned, failure = _value(RE, det)
        assert failure == "" and j_aligned > 0
        try:
            RE(bps.mv(*[x for m in motors for x in (m, aligned[m.name] + DETUNE[m.name])]))
            j_detuned, _ = _value(RE, det)
            assert j_detuned < 0.5 * j_aligned
            bounds = {m.name: _around(sim_beamline.config.motor(m.name), aligned[m.name],
                                      2.5 * abs(DETUNE[m.name])) for m in motors}
            docs = []
            RE.subscribe(lambda name, doc: docs.append((name, doc)))
            result = RE(align([det], *motors, value=det.name, bounds=bounds,
                              max_evaluations=30)).plan_result
            print(flavour, j_aligned, j_detuned, result)
            assert result.evaluations == 30
            assert result.remeasured > 0.8 * j_aligned
            here = {m.name: RE(bps.rd(m)).plan_result for m in motors}
            assert here == pytest.approx(result.best, abs=0.2)
            primary = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "primary"}
            events = [d for n, d in docs if n == "event" and d["descriptor"] in primary]
            assert len(events) == 30
            assert all(e["data"][f"{det.name}_failure"] == "" or e["data"][det.name] == 0.0
                       for e in events)
            # provenance: one proposal per evaluation, each measured once, where proposed
            props = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "proposals"}
            proposals = [d["data"] for n, d in docs if n == "event" and d["descriptor"] in props]
            assert len({p["proposal_id"] for p in proposals}) == len(proposals) == 30
            for p, e in zip(proposals, events, strict=True):
                for m in motors:
                    tol = sim_beamline.config.motor(m.name).tolerance
                    assert e["data"][m.name] == pytest.approx(p[f"proposal_{m.name}"], abs=tol)
        finally:
            RE(bps.mv(*[x for m in motors for x in (m, aligned[m.name])]))


@pytest.mark.parametrize("flavour", ["ophyd_async", "classic"])
def test_beam_off_the_camera_is_a_failed_evaluation(sim_beamline, flavour):
    """Shutter closed: every frame is a failed evaluation, told as such, and the run ends
    with no best point instead of 'aligning' on noise."""
    RE = RunEngine(call_returns_result=True)
    with beamline_for(flavour, RE, sim_beamline.config_path) as bl:
        motor = bl.motor("hkb_pitch")
        here = RE(bps.rd(motor)).plan_result
        det = FluxDensity(bl.beam_camera, sim_beamline.config.element("beam_camera"), 10.0)
        RE(bps.mv(bl.shutter, "CLOSED"))
        try:
            result = RE(align([det], motor, value=det.name, max_evaluations=4,
                              bounds={"hkb_pitch": (here - 2.0, here + 2.0)})).plan_result
        finally:
            RE(bps.mv(bl.shutter, "OPEN"))
            RE(bps.mv(motor, here))
        assert result.failures == result.evaluations == 4
        assert all("beam off camera" in m.failure for m in result.measurements)
        assert result.best is None and result.remeasured is None
