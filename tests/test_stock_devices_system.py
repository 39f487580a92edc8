"""Stock, unmodified device classes against the simulated beamline: what a facility's existing
device code does here must work as on a real beamline (ophyd EpicsMotor and EpicsScaler,
ophyd-async Motor)."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import ophyd
import pytest
from bluesky import RunEngine
from ophyd import EpicsMotor
from ophyd.scaler import EpicsScaler
from ophyd.utils import LimitError
from ophyd_async.epics.motor import Motor
from ophyd_async.plan_stubs import ensure_connected

from devices.caproto_gc import collector_paused

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)


@pytest.fixture(scope="module")
def classic(sim_beamline):
    if ophyd.cl.name != "caproto":  # pyepics is not a dependency
        ophyd.set_cl("caproto")
    cfg = sim_beamline.config
    with collector_paused():  # caproto's callback-copy race (devices/caproto_gc.py)
        motor = EpicsMotor(cfg.pv(cfg.motor("sample_x").pv), name="stock_x")
        scaler = EpicsScaler(cfg.pv(cfg.scaler.pv), name="stock_scaler")
        for device in (motor, scaler):
            device.wait_for_connection(timeout=20)
    yield motor, scaler
    motor.set(cfg.motor("sample_x").initial_position).wait(10)
    for device in (motor, scaler):
        device.destroy()


def test_stock_epics_motor_moves_and_refuses_limits(classic, sim_beamline):
    motor, _ = classic
    cfg = sim_beamline.config.motor("sample_x")
    assert motor.limits == (cfg.low_limit, cfg.high_limit)
    motor.set(1.25).wait(10)
    assert motor.position == pytest.approx(1.25, abs=cfg.tolerance)
    assert motor.motor_done_move.get() == 1
    with pytest.raises(LimitError):
        motor.set(cfg.high_limit + 1.0)


def test_stock_epics_scaler_counts_for_preset_time(classic, sim_beamline):
    _, scaler = classic
    scaler.preset_time.put(0.2, wait=True)
    scaler.trigger().wait(10)
    reading = scaler.read()
    clock = reading["stock_scaler_channels_chan1"]["value"]
    assert clock == pytest.approx(0.2 * scaler.freq.get(), rel=1e-6)  # FREQ * TP
    i0_channel = next(c.number for c in sim_beamline.config.scaler.channels if c.name == "i0")
    assert reading[f"stock_scaler_channels_chan{i0_channel}"]["value"] > 0


def test_bluesky_scan_with_stock_classic_devices(RE, classic):
    motor, scaler = classic
    scaler.preset_time.put(0.05, wait=True)
    docs = []
    RE(bp.scan([scaler], motor, -1.0, 1.0, 5), lambda name, doc: docs.append((name, doc)))
    events = [doc for name, doc in docs if name == "event"]
    assert [round(e["data"]["stock_x"], 3) for e in events] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert all(e["data"]["stock_scaler_channels_chan1"] > 0 for e in events)


def test_stock_ophyd_async_motor_moves(RE, sim_beamline):
    cfg = sim_beamline.config
    motor = Motor(cfg.pv(cfg.motor("sample_y").pv), name="stock_y")
    RE(ensure_connected(motor, timeout=10))
    RE(bps.mv(motor, -2.5))
    assert RE(bps.rd(motor)).plan_result == pytest.approx(-2.5, abs=cfg.motor("sample_y").tolerance)
    RE(bps.mv(motor, cfg.motor("sample_y").initial_position))
