"""Mock-first unit tests of devices/ (no IOC): names, verified moves, stale reads,
put-error workaround, shutter, suspender adapter, connection errors."""

from __future__ import annotations

import asyncio

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from aioca import CANothing
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from epicscorelibs.ca import cadef, dbr
from ophyd_async.core import SignalRW, callback_on_mock_put, set_mock_value
from ophyd_async.epics.core import _aioca
from ophyd_async.plan_stubs import ensure_connected

from devices import LimitError, MoveError, PutError, ShutterError, load_beamline_config
from devices.beam import ShutterState
from devices.ca_put import CheckedCaSignalBackend, raise_put_errors
from devices.factory import PVConnectError, make_beamline
from devices.scaler import ScalerTimeoutError
from devices.suspenders import ClassicSignalAdapter, suspend_on_beam_loss


def _run(make_awaitable):
    """Create and await ``make_awaitable()`` inside the bluesky event loop."""

    async def go():
        return await make_awaitable()

    return call_in_bluesky_event_loop(go(), timeout=30)


@pytest.fixture
def RE():
    engine = RunEngine(call_returns_result=True)
    yield engine
    if engine.state != "idle":
        engine.halt()


@pytest.fixture
def bl(RE):
    beamline = make_beamline(load_beamline_config())
    RE(ensure_connected(beamline, mock=True))
    return beamline


def test_event_field_names_are_config_names(RE, bl):
    docs = []
    RE(bp.count([bl.scaler, bl.ring_current, bl.shutter, bl.mono_energy, bl.vkb.pitch]),
       lambda name, doc: docs.append((name, doc)))
    (event,) = [d for n, d in docs if n == "event"]
    assert set(event["data"]) == {"clock", "i0", "det", "ring_current", "shutter_status",
                                  "mono_energy", "vkb_pitch"}
    assert bl.sample_stage.x.name == "sample_x" and bl.sample_stage.y.name == "sample_y"
    assert set(bl.motors) == {m.name for m in bl.config.motors}
    assert {"dcm_pitch", "ssa_gap", "vkb_roll", "hkb_bender", "mono_energy"} <= set(bl.motors)


def test_grid_scan_runs_on_mock_beamline(RE, bl):
    docs = []
    RE(bp.grid_scan([bl.scaler], bl.sample_stage.x, -1, 1, 3, bl.sample_stage.y, -1, 1, 2),
       lambda name, doc: docs.append((name, doc)))
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 6
    assert {"sample_x", "sample_y", "det", "i0"} <= set(events[0]["data"])


async def _limits(motor, low=-10.0, high=10.0, egu="mm"):
    for sig, value in [(motor.low_limit_travel, low), (motor.high_limit_travel, high),
                       (motor.dial_low_limit_travel, low), (motor.dial_high_limit_travel, high),
                       (motor.motor_egu, egu), (motor.deadband, 0.001)]:
        set_mock_value(sig, value)


def test_limit_violation_names_motor_value_limits_units(RE, bl):
    x = bl.sample_stage.x
    call_in_bluesky_event_loop(_limits(x))
    with pytest.raises(LimitError, match=r"move of sample_x to 12.0 mm outside limits "
                                         r"\[-10.0, 10.0\] mm"):
        _run(lambda: x.set(12.0))
    with pytest.raises(LimitError, match="not a finite number"):
        _run(lambda: x.set(float("nan")))


def test_move_short_of_target_raises_move_error(RE, bl):
    x = bl.sample_stage.x
    call_in_bluesky_event_loop(_limits(x))
    # a stalling motor: the put completes, the readback stops 0.5 mm short
    callback_on_mock_put(x.user_setpoint, lambda v: set_mock_value(x.user_readback, v - 0.5))
    with pytest.raises(MoveError) as err:
        _run(lambda: x.set(2.0))
    for text in ("sample_x", "2.0 mm", "1.5 mm", "tolerance 0.001 mm"):
        assert text in str(err.value)
    # within tolerance (config: 0.001 mm) is done
    callback_on_mock_put(x.user_setpoint, lambda v: set_mock_value(x.user_readback, v + 4e-4))
    _run(lambda: x.set(3.0))


def test_trigger_waits_for_nacq_so_reads_are_fresh(RE, bl):
    """The CNT put completes before the new counts land (as CA monitors can): the trigger
    must still not finish until NACQ moved, so the read is the new acquisition."""
    sc = bl.scaler

    async def slow_count(value):
        async def land():
            await asyncio.sleep(0.05)
            n = await sc.acquisition_count.get_value()
            set_mock_value(sc.det, 1000 * (n + 1))
            set_mock_value(sc.acquisition_count, n + 1)

        asyncio.get_running_loop().create_task(land())
        return "Done"

    callback_on_mock_put(sc.count, slow_count)
    reads = []
    RE(bp.count([sc], num=4), lambda name, doc: name == "event" and reads.append(doc["data"]))
    assert [r["det"] for r in reads] == [1000, 2000, 3000, 4000]


def test_trigger_fails_clearly_if_nacq_never_moves(RE, bl):
    sc = bl.scaler
    sc._nacq_timeout_s = 0.1
    callback_on_mock_put(sc.count, lambda v: "Done")  # counts, but NACQ stays
    with pytest.raises(ScalerTimeoutError, match=r"BL:SCALER1:NACQ stayed at 0 for 0.1 s"):
        _run(lambda: sc.trigger())


def test_shutter_set_verified_against_status(RE, bl):
    RE(bps.mv(bl.shutter, "CLOSED"))
    assert call_in_bluesky_event_loop(bl.shutter.status.get_value()) == ShutterState.CLOSED
    with pytest.raises(ValueError, match="HALF"):
        _run(lambda: bl.shutter.set("HALF"))
    bl.shutter._settle_timeout_s = 0.1
    callback_on_mock_put(bl.shutter.command, lambda v: None)  # blade stuck
    with pytest.raises(ShutterError, match="commanded OPEN but .* reads CLOSED"):
        _run(lambda: bl.shutter.set(ShutterState.OPEN))


# --- the put-error workaround, at the exact spot of the bug -----------------------------


ECA_PUTFAIL = 160  # caerr.h: DEFMSG(CA_K_WARNING, 20), "Channel write request failed"


def _put_failing_signal(backend_cls, monkeypatch, code=ECA_PUTFAIL):
    async def rejecting_caput(pv, value, **kwargs):
        raise CANothing(pv, code)  # what aioca raises for a rejected put

    monkeypatch.setattr(_aioca, "caput", rejecting_caput)
    backend = backend_cls(float, "BL:SAMPLE:X.VAL", "BL:SAMPLE:X.VAL")
    backend.converter = _aioca.CaConverter(float, dbr.DBR_DOUBLE)  # as connect() would
    return SignalRW(backend, name="velo")


async def test_stock_backend_swallows_put_error(monkeypatch):
    """Documents the upstream bug: if this starts failing, ophyd-async fixed it and
    devices.ca_put can go."""
    assert not CANothing("pv", ECA_PUTFAIL)  # falsy: the root cause
    await _put_failing_signal(_aioca.CaSignalBackend, monkeypatch).set(-1.0)


@pytest.mark.parametrize("code", [ECA_PUTFAIL, cadef.ECA_DISCONN])
async def test_checked_backend_raises_put_error(monkeypatch, code):
    sig = _put_failing_signal(CheckedCaSignalBackend, monkeypatch, code)
    with pytest.raises(PutError, match=r"put of -1.0 to BL:SAMPLE:X.VAL failed"):
        await sig.set(-1.0)


def test_factory_applies_checked_puts_to_every_ca_signal():
    beamline = make_beamline(load_beamline_config())
    backends = [s._connector._init_backend for s in
                [beamline.sample_stage.x.user_setpoint, beamline.mono_energy.velocity,
                 beamline.scaler.count, beamline.shutter.command]]
    assert all(type(b) is CheckedCaSignalBackend for b in backends)
    assert raise_put_errors(beamline) is beamline  # idempotent


async def test_unconnectable_pvs_named_with_timeout():
    cfg = load_beamline_config().model_copy(update={"prefix": "NOSUCH:"})
    beamline = make_beamline(cfg)
    with pytest.raises(PVConnectError) as err:
        await beamline.connect(timeout=0.3)
    assert "ca://NOSUCH:SAMPLE:X.VAL" in str(err.value)
    assert "within 0.3 s" in str(err.value)


def test_classic_unconnectable_pvs_named_with_timeout():
    from devices import DeviceConnectError, make_ophyd_beamline

    cfg = load_beamline_config().model_copy(update={"prefix": "NOSUCH:"})
    with pytest.raises(DeviceConnectError) as err:
        make_ophyd_beamline(cfg, timeout_s=0.3)
    assert "NOSUCH:SAMPLE:X.RBV" in str(err.value)
    assert "within 0.3 s" in str(err.value)
    assert "NOSUCH:SAMPLE:X.RBV" in err.value.pvs


# --- suspender adapter ------------------------------------------------------------------


def test_suspend_on_beam_loss_trips_and_resets(RE, bl):
    set_mock_value(bl.ring_current.current, 500.0)
    sus = suspend_on_beam_loss(bl.ring_current, 100.0, resume_mA=400.0)
    assert isinstance(sus._sig, ClassicSignalAdapter)
    RE.install_suspender(sus)
    try:
        assert sus._sig.get() == 500.0 and not sus.tripped

        async def set_current(value):
            set_mock_value(bl.ring_current.current, value)
            await asyncio.sleep(0.01)

        call_in_bluesky_event_loop(set_current(5.0))
        assert sus.tripped
        call_in_bluesky_event_loop(set_current(300.0))  # above floor, below resume
        assert sus.tripped
        call_in_bluesky_event_loop(set_current(450.0))
        assert not sus.tripped
    finally:
        RE.remove_suspender(sus)
    with pytest.raises(ValueError, match="floor_mA"):
        suspend_on_beam_loss(bl.ring_current, 0.0)


def test_adapter_get_subscribe_run_false_and_clear(RE, bl):
    set_mock_value(bl.ring_current.current, 321.0)
    adapter = ClassicSignalAdapter(bl.ring_current.current)
    assert adapter.name == "ring_current"
    assert adapter.get() == 321.0  # no subscription yet: a get in the bluesky loop
    seen = []

    def callback(value, old_value, **kwargs):
        seen.append((value, old_value))

    adapter.subscribe(callback, run=False)  # the current value is not delivered

    async def post(value):
        set_mock_value(bl.ring_current.current, value)
        await asyncio.sleep(0.01)

    call_in_bluesky_event_loop(post(123.0))
    adapter.clear_sub(callback)
    call_in_bluesky_event_loop(post(5.0))
    assert seen == [(123.0, 321.0)]
