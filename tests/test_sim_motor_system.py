"""Motor record semantics over real Channel Access (caproto threading client)."""

from __future__ import annotations

import threading
import time

import pytest
from caproto import ChannelType
from caproto.threading.client import Context

from tests.ioc_fixture import CaPutError, ca_put

pytestmark = pytest.mark.system
FIELDS = ("VAL", "RBV", "DMOV", "MOVN", "STOP", "HLM", "LLM", "DHLM", "DLLM", "OFF", "DIR",
          "FOFF", "SET", "VELO", "EGU", "DESC", "RDBD", "PREC", "VMAX", "MRES", "HLS", "LLS")


@pytest.fixture(scope="module")
def ca_context():
    ctx = Context()
    yield ctx
    ctx.disconnect()


@pytest.fixture
def motor(sim_beamline, ca_context):
    """sample_x's fields as caproto PVs; restores config state afterwards (shared IOC)."""
    cfg = sim_beamline.config.motor("sample_x")
    name = sim_beamline.pv(cfg.pv)
    pvs = dict(zip(FIELDS, ca_context.get_pvs(*(f"{name}.{f}" for f in FIELDS)), strict=True))
    for pv in pvs.values():
        pv.wait_for_connection(timeout=10)
    yield pvs
    for field, value in (("STOP", 1), ("SET", 0), ("FOFF", 0), ("DIR", 0), ("OFF", 0.0),
                         ("HLM", cfg.high_limit), ("LLM", cfg.low_limit),
                         ("VELO", cfg.velocity), ("VAL", cfg.initial_position)):
        pvs[field].write(value, wait=True, timeout=10)


def value(pv):
    return pv.read().data[0]


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_fields_from_config(motor, sim_beamline):
    cfg = sim_beamline.config.motor("sample_x")
    assert value(motor["EGU"]) == b"mm" and value(motor["DESC"]) == b"Sample stage x"
    assert value(motor["VELO"]) == cfg.velocity and value(motor["RDBD"]) == cfg.tolerance
    assert (value(motor["DLLM"]), value(motor["DHLM"])) == (cfg.low_limit, cfg.high_limit)
    assert value(motor["VMAX"]) > 0 and value(motor["MRES"]) > 0
    assert motor["FOFF"].read(data_type=ChannelType.CTRL_ENUM).metadata.enum_strings == (
        b"Variable", b"Frozen")
    assert motor["SET"].read(data_type=ChannelType.CTRL_ENUM).metadata.enum_strings == (
        b"Use", b"Set")


def test_zero_length_move_toggles_dmov(motor):
    seen = []

    def on_dmov(sub, response):
        seen.append(int(response.data[0]))

    sub = motor["DMOV"].subscribe()
    sub.add_callback(on_dmov)  # a named function: caproto keeps weak references only
    wait_for(lambda: seen == [1])
    motor["VAL"].write(value(motor["VAL"]), wait=True, timeout=5)
    wait_for(lambda: seen[-3:] == [1, 0, 1])
    sub.clear()


def test_put_completes_when_motion_ends(motor):
    rbv_updates = []

    def on_rbv(sub, response):
        rbv_updates.append(response.data[0])

    sub = motor["RBV"].subscribe()
    sub.add_callback(on_rbv)
    t0 = time.monotonic()
    motor["VAL"].write(2.0, wait=True, timeout=10)  # 2 mm at 5 mm/s: 0.4 s
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.38
    assert value(motor["DMOV"]) == 1 and value(motor["MOVN"]) == 0
    assert abs(value(motor["RBV"]) - 2.0) <= value(motor["RDBD"])
    assert len([v for v in rbv_updates if 0 < v < 2.0]) >= 10  # RBV moved during the move
    sub.clear()


def test_out_of_limit_put_is_rejected(motor, sim_beamline):
    # caproto's threading client drops CA error replies to puts, so use a raw CA put
    before = value(motor["RBV"])
    with pytest.raises(CaPutError, match=r"10.5 mm outside limits \[-10.0, 10.0\] mm"):
        ca_put(motor["VAL"].name, 10.5, sim_beamline.port)
    assert value(motor["RBV"]) == before and value(motor["DMOV"]) == 1
    with pytest.raises(CaPutError, match=r"VELO=0.0 outside \(0, VMAX"):
        ca_put(motor["VELO"].name, 0.0, sim_beamline.port)
    assert value(motor["VELO"]) > 0


def test_control_limits_follow_hlm_and_off(motor, sim_beamline):
    motor["HLM"].write(5.0, wait=True, timeout=5)
    ctrl = motor["VAL"].read(data_type=ChannelType.CTRL_DOUBLE).metadata
    assert (ctrl.lower_ctrl_limit, ctrl.upper_ctrl_limit) == (-10.0, 5.0)
    assert value(motor["DHLM"]) == 5.0
    motor["OFF"].write(1.0, wait=True, timeout=5)
    ctrl = motor["VAL"].read(data_type=ChannelType.CTRL_DOUBLE).metadata
    assert (ctrl.lower_ctrl_limit, ctrl.upper_ctrl_limit) == (-9.0, 6.0)
    assert (value(motor["LLM"]), value(motor["HLM"])) == (-9.0, 6.0)
    assert value(motor["DHLM"]) == 5.0  # dial limits stay
    with pytest.raises(CaPutError):
        ca_put(motor["VAL"].name, 6.5, sim_beamline.port)


def test_stop_halts_motion_and_completes_the_put(motor):
    done = threading.Event()

    def on_done(response):
        done.set()

    motor["VAL"].write(9.0, wait=False, callback=on_done)  # 1.8 s move
    wait_for(lambda: value(motor["RBV"]) > 0.5)
    assert not done.is_set()
    motor["STOP"].write(1, wait=True, timeout=5)
    assert done.wait(2.0), "VAL put did not complete after STOP"
    wait_for(lambda: value(motor["DMOV"]) == 1)
    rbv = value(motor["RBV"])
    assert 0.5 < rbv < 8.0 and value(motor["VAL"]) == pytest.approx(rbv)
    time.sleep(0.05)  # the one fixed wait here: proves the motor stays put after STOP
    assert value(motor["RBV"]) == rbv


def test_set_mode_calibrates_without_motion(motor):
    start = value(motor["RBV"])
    motor["SET"].write(1, wait=True, timeout=5)
    motor["VAL"].write(start + 3.0, wait=True, timeout=5)
    motor["SET"].write(0, wait=True, timeout=5)
    assert value(motor["RBV"]) == pytest.approx(start + 3.0)
    assert value(motor["OFF"]) == pytest.approx(3.0)  # FOFF Variable: OFF absorbed it
    assert value(motor["HLM"]) == pytest.approx(13.0) and value(motor["DHLM"]) == 10.0
