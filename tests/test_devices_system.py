"""System tests of devices/ against the simulated beamline IOC, both flavours."""

from __future__ import annotations

import asyncio
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from bluesky.preprocessors import run_wrapper, stage_wrapper
from bluesky.utils import FailedStatus
from ophyd_async.core import wait_for_value
from ophyd_async.epics.core import epics_signal_r
from ophyd_async.epics.motor import Motor
from ophyd_async.plan_stubs import ensure_connected

from devices import LimitError, MoveError, PutError
from devices.beam import ShutterState
from devices.scaler import CountState
from tests.devices_system_helpers import (
    connect_async_beamline,
    connect_classic_beamline,
    run_in_loop,
)

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)  # before connecting (FIELD_NOTES)


@pytest.fixture(scope="module")
def abl(RE, sim_beamline):
    return connect_async_beamline(RE, sim_beamline.config_path)


@pytest.fixture(scope="module")
def cbl(sim_beamline):
    beamline = connect_classic_beamline(sim_beamline.config_path)
    yield beamline
    beamline.destroy()


@pytest.fixture(params=["ophyd_async", "classic"])
def bl(request, abl, cbl):
    return abl if request.param == "ophyd_async" else cbl


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, FailedStatus) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def test_move_verified_and_limit_violation(RE, bl):
    x = bl.sample_stage.x
    RE(bps.mv(x, 1.25))
    docs = []
    RE(bp.count([x]), lambda n, d: n == "event" and docs.append(d["data"]))
    assert docs[0]["sample_x"] == pytest.approx(1.25, abs=1e-3)
    with pytest.raises((FailedStatus, LimitError)) as err:
        RE(bps.mv(x, 12.0))
    assert isinstance(_root_cause(err.value), LimitError)
    assert "move of sample_x to 12.0 mm outside limits [-10.0, 10.0] mm" in str(
        _root_cause(err.value))
    RE(bp.count([x]), lambda n, d: n == "event" and docs.append(d["data"]))
    assert docs[-1]["sample_x"] == pytest.approx(1.25, abs=1e-3)  # never moved


def test_mono_energy_in_ev(RE, bl):
    mono = bl.mono_energy
    RE(bps.mv(mono, 8950.0))
    docs = []
    RE(bp.count([mono]), lambda n, d: n == "event" and docs.append(d["data"]))
    assert docs[0]["mono_energy"] == pytest.approx(8950.0, abs=0.01)
    with pytest.raises((FailedStatus, LimitError)) as err:
        RE(bps.mv(mono, 9500.0))
    assert "move of mono_energy to 9500.0 eV outside limits [8800.0, 9300.0] eV" in str(
        _root_cause(err.value))
    RE(bps.mv(mono, 8900.0))


def test_stop_mid_move_ophyd_async(RE, abl):
    y = abl.sample_stage.y
    RE(bps.mv(y, 0.0))

    async def move_then_stop():
        status = y.set(5.0)  # 1 s at 5 mm/s
        await asyncio.sleep(0.2)
        await y.stop(success=False)
        with pytest.raises(RuntimeError, match="sample_y was stopped"):
            await status
        # stop() returns at once; the record posts DMOV=1 when motion has ended
        await wait_for_value(y.motor_done_move, 1, timeout=5)
        return await y.user_readback.get_value(cached=False)

    stopped_at = run_in_loop(move_then_stop)
    assert 0.2 < stopped_at < 4.5


def test_stop_mid_move_classic(cbl):
    y = cbl.sample_stage.y
    y.set(0.0).wait(10)  # VerifiedEpicsMotor waits out late DMOV updates of earlier moves
    status = y.set(5.0)
    time.sleep(0.2)
    y.stop()
    with pytest.raises(MoveError, match="move of sample_y to 5.0 mm"):
        status.wait(10)
    assert 0.2 < y.user_readback.get(use_monitor=False) < 4.5


def test_rejected_puts_raise(RE, abl):
    x = abl.sample_stage.x
    with pytest.raises(PutError, match=r"BL:SAMPLE:X.VELO"):
        run_in_loop(lambda: x.velocity.set(-1.0))
    with pytest.raises(PutError, match=r"BL:SAMPLE:X.VAL"):  # bypasses the client check
        run_in_loop(lambda: x.user_setpoint.set(50.0))
    assert run_in_loop(lambda: x.velocity.get_value()) == 5.0


def test_stock_motor_still_swallows_rejected_put(RE, abl):
    """Regression guard for the upstream bug: when this fails, ophyd-async/aioca fixed it
    and devices.ca_put can be retired."""
    stock = Motor("BL:SAMPLE:X", name="stock_x")
    RE(ensure_connected(stock))
    run_in_loop(lambda: stock.velocity.set(-1.0))  # rejected by the IOC, yet no error
    assert run_in_loop(lambda: stock.velocity.get_value()) == 5.0


def test_count_scaler(RE, bl):
    RE(bps.mv(bl.scaler.preset_time, 0.01))
    docs = []
    RE(bp.count([bl.scaler], num=3), lambda n, d: n == "event" and docs.append(d["data"]))
    for data in docs:
        assert data["clock"] == 100_000  # FREQ 1e7 Hz * TP 0.01 s
        # i0 ~ Poisson(1e6 cps * 0.01 s * ring fraction ~1): 1e4 +- 1 %
        assert 8_000 < data["i0"] < 11_000
        assert data["det"] > 0


def test_scaler_hints_only_the_hinted_channels(RE, bl):
    """beamline.yaml hints det alone (i0 is `hinted: false`, the clock never is), in both
    flavours: BestEffortCallback draws one live plot per hinted field and event."""
    assert bl.scaler.hints == {"fields": ["det"]}
    docs = []
    RE(bp.count([bl.scaler]), lambda n, d: n == "event" and docs.append(d["data"]))
    assert {"clock", "i0", "det"} <= set(docs[0])  # still read, only not hinted


def test_trigger_never_reads_previous_acquisition(RE, abl):
    """Alternate TP so each count has a distinct clock value: a stale read would show
    the previous acquisition's clock (FIELD_NOTES: 497/500 stale before the fix)."""
    sc = abl.scaler

    def alternating():
        for i in range(60):
            tp = 0.001 if i % 2 == 0 else 0.002
            yield from bps.mv(sc.preset_time, tp)
            yield from bps.trigger_and_read([sc])

    docs = []
    RE(run_wrapper(stage_wrapper(alternating(), [sc])),
       lambda n, d: n == "event" and docs.append(d["data"]["clock"]))
    assert docs == [10_000 if i % 2 == 0 else 20_000 for i in range(60)]


def test_stock_style_trigger_does_read_stale_counts(RE, abl):
    """The hazard the NACQ wait fixes is real here: CNT put-completion followed by a read
    from the CA monitor cache returns the previous acquisition (measured ~50 %). If this
    fails, monitor updates now arrive before put replies and the NACQ wait is belt only."""
    sc = abl.scaler
    cached_clock = epics_signal_r(int, sc.clock.source.removeprefix("ca://"), name="cclock")
    RE(ensure_connected(cached_clock))

    async def naive_triggers() -> int:
        await cached_clock.stage()  # monitor + cache, as staged StandardReadable signals
        stale = 0
        try:
            for i in range(40):
                tp = 0.001 if i % 2 == 0 else 0.002
                await sc.preset_time.set(tp)
                await sc.count.set(CountState.COUNT)  # put completion only
                stale += await cached_clock.get_value() != round(tp * 1e7)
        finally:
            await cached_clock.unstage()
        return stale

    assert run_in_loop(naive_triggers) > 0


def test_shutter_gates_the_beam(RE, bl):
    RE(bps.mv(bl.scaler.preset_time, 0.01))
    docs = []
    try:
        RE(bps.mv(bl.shutter, "CLOSED"))
        RE(bp.count([bl.scaler, bl.shutter]), lambda n, d: n == "event" and docs.append(d["data"]))
    finally:
        RE(bps.mv(bl.shutter, "OPEN"))
    assert str(docs[0]["shutter_status"]) in ("CLOSED", str(ShutterState.CLOSED))
    assert docs[0]["i0"] < 50  # dark counts only (5 cps * 0.01 s)


