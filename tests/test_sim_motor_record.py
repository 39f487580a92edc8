"""The motor record's logic in-process (no CA): imperfections, calibration, limits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from configs.schema import MotorConfig
from sim.config import MotorSimConfig, StallConfig
from sim.errors import MotorLimitError
from sim.motor_record import MotorRecord

CFG = MotorConfig(name="m", pv="M", description="test motor", low_limit=-10, high_limit=10,
                  velocity=50.0, tolerance=0.001)


async def record(**sim) -> MotorRecord:
    rec = MotorRecord("T:M", CFG, MotorSimConfig(**sim), 0.002, np.random.default_rng(0))
    await rec.initialise()
    return rec


async def move(rec: MotorRecord, value: float) -> None:
    await asyncio.wait_for(rec.val.write(value), 5)


async def test_ideal_move_reaches_target_and_toggles_dmov():
    rec = await record()
    await move(rec, 2.5)
    assert rec.rbv.value == pytest.approx(2.5) and rec.dmov.value == 1 and rec.movn.value == 0
    assert rec.val.value == 2.5 and rec.rcnt.value == 0 and rec.miss.value == 0


async def test_backlash_is_taken_up_by_retries():
    rec = await record(backlash_egu=0.05, retries=3)
    await move(rec, 2.0)
    await move(rec, 1.0)  # reversal: the slack would leave the load 0.05 behind
    assert abs(rec.rbv.value - 1.0) <= CFG.tolerance
    assert rec.rcnt.value >= 1 and rec.miss.value == 0


async def test_backlash_without_retries_misses():
    rec = await record(backlash_egu=0.05, retries=0)
    await move(rec, 2.0)
    await move(rec, 1.0)
    assert abs(rec.rbv.value - 1.0) == pytest.approx(0.025, abs=1e-9)
    assert rec.miss.value == 1 and rec.dmov.value == 1


async def test_stall_region_stops_short_but_completes():
    rec = await record(stall=StallConfig(regions=((3.0, 4.0),)))
    await move(rec, 5.0)  # the put completes ...
    assert rec.rbv.value == pytest.approx(3.0)  # ... but the motor is stuck at the region edge
    assert rec.miss.value == 1 and rec.dmov.value == 1
    assert rec.position == pytest.approx(3.0)


async def test_random_stall_probability_one():
    rec = await record(stall=StallConfig(probability=1.0, shortfall_fraction=0.5), retries=0)
    await move(rec, 4.0)
    assert rec.rbv.value == pytest.approx(2.0) and rec.miss.value == 1


async def test_jitter_on_readback_only():
    rec = await record(jitter_egu=0.01)
    await move(rec, 1.0)
    samples = []
    for _ in range(200):
        await rec._post_position()
        samples.append(rec.rbv.value)
    assert 0.007 < np.std(samples) < 0.013 and rec.position == pytest.approx(1.0, abs=1e-3)


async def test_dial_move_outside_limits_rejected():
    rec = await record()
    with pytest.raises(MotorLimitError, match=r"outside limits \[-10.0, 10.0\] mm"):
        await rec.move_dial(11.0)
    assert rec.dmov.value == 1 and rec.position == 0.0


async def test_frozen_set_redefines_dial_without_moving_the_sample():
    rec = await record()
    await rec.foff.write("Frozen")
    await rec.set.write("Set")
    await rec.val.write(3.0)
    await rec.set.write("Use")
    assert rec.rbv.value == pytest.approx(3.0) and rec.drbv.value == pytest.approx(3.0)
    assert rec.off.value == 0.0 and rec.position == 0.0  # the stage did not move


async def test_dir_neg_mirrors_limits():
    rec = await record()
    await rec.off.write(1.0)
    await rec.dir.write("Neg")
    assert (rec.llm.value, rec.hlm.value) == (-9.0, 11.0)
    assert (rec.dllm.value, rec.dhlm.value) == (-10.0, 10.0)
    await move(rec, 3.0)  # user 3 = -dial + 1  ->  dial -2
    assert rec.drbv.value == pytest.approx(-2.0) and rec.rbv.value == pytest.approx(3.0)


async def test_limit_switch_at_hard_travel_end():
    rec = await record()
    await rec.dhlm.write(20.0)  # soft limit beyond the hard end (10 mm + 2 % of the range)
    assert rec.hlm.value == 20.0 and rec.val.upper_ctrl_limit == 20.0
    await move(rec, 15.0)
    assert rec.rbv.value == pytest.approx(10.4) and rec.hls.value == 1 and rec.lls.value == 0
    await move(rec, 0.0)
    assert rec.hls.value == 0


async def test_retarget_mid_move_completes_both_puts_at_the_new_target():
    rec = await record()
    first = asyncio.create_task(rec.val.write(5.0))  # 0.1 s at 50 mm/s
    await asyncio.sleep(0.03)
    assert 0 < rec.rbv.value < 5.0
    await move(rec, -1.0)
    await asyncio.wait_for(first, 1)
    assert rec.rbv.value == pytest.approx(-1.0) and rec.dmov.value == 1


@pytest.mark.parametrize("distance, accl", [(5.0, 0.1), (0.5, 0.1), (5.0, 0.0)])
async def test_move_time_follows_the_acceleration_ramp(distance, accl):
    """A move takes d / VELO + ACCL, or 2 sqrt(d ACCL / VELO) when too short to reach VELO;
    the speed never exceeds VELO and ramps up from rest (plans.scoring.motion_time_s)."""
    from plans.scoring import motion_time_s

    rec = await record()
    await rec.accl.write(accl)
    positions, t0 = [], asyncio.get_running_loop().time()
    task = asyncio.create_task(move(rec, distance))
    while not task.done():
        positions.append((asyncio.get_running_loop().time() - t0, rec.rbv.value))
        await asyncio.sleep(0.002)
    elapsed = asyncio.get_running_loop().time() - t0
    expected = motion_time_s(np.array([[0.0], [distance]]), CFG.velocity, accl)
    assert expected <= elapsed <= expected + 0.08  # ticks and scheduling on a busy machine
    t, x = np.array(positions).T
    dt, dx = t[None, :] - t[:, None], x[None, :] - x[:, None]
    # the RBV posts once per tick (2 ms) and a sample may read the previous post: on a busy
    # machine a stalled event loop stretches both, so the bound is the longest gap seen
    slack = 2 * max(float(np.max(np.diff(t))), 0.002) * CFG.velocity
    assert np.all(dx[dt >= 0.02] <= CFG.velocity * dt[dt >= 0.02] + slack)  # never above VELO
    if accl:
        early = x[t <= 0.3 * accl]  # at VELO from the start it would be at VELO * t
        assert early.max() < 0.5 * CFG.velocity * 0.3 * accl


async def test_stop_brakes_at_the_acceleration_rate():
    """STOP at full speed: the motor decelerates over VELO * ACCL / 2 and VAL follows it."""
    rec = await record()
    await rec.accl.write(0.1)
    task = asyncio.create_task(move(rec, 9.0))
    await asyncio.sleep(0.12)  # past the 0.1 s ramp: cruising at 50 mm/s
    at_stop = rec.rbv.value
    await rec.stop.write(1)
    await asyncio.wait_for(task, 5)
    braking = rec.rbv.value - at_stop
    assert braking == pytest.approx(CFG.velocity * 0.1 / 2, abs=0.3)  # 2.5 mm
    assert rec.val.value == pytest.approx(rec.rbv.value) and rec.dmov.value == 1


async def test_stop_before_the_motor_moves_ends_the_move():
    """STOP right after the VAL put, before the motor has any speed: the move ends at once
    with DMOV back to 1 (the motion once divided by a zero peak speed and left DMOV at 0)."""
    rec = await record()
    await rec.accl.write(0.5)
    task = asyncio.create_task(move(rec, 9.0))
    for _ in range(200):  # until the move has started: DMOV 0
        await asyncio.sleep(0.001)
        if rec.dmov.value == 0:
            break
    await rec.stop.write(1)
    await asyncio.wait_for(task, 5)
    assert rec.dmov.value == 1 and rec.rbv.value < 1.0
