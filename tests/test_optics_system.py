"""The optics train as served by the simulator (configs/beamline.yaml), through real CA.

Optics motors (all 11) move and read back in both device flavours; the beam camera's NDStats
match the image it serves, frame by frame; the centroid follows the VKB pitch as the optics
model predicts; the shutter gates the camera; the scaler's flux follows the optics; stock
ophyd and ophyd-async motors drive an optics DOF; a plain CA client reads the stats; and
``python -m sim --list`` lists the camera records and the hard variant's 12 optics motors.

Every test puts what it moves back where it found it (the session IOC is shared).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import ophyd
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from ophyd import EpicsMotor
from ophyd_async.core import wait_for_value
from ophyd_async.epics.motor import Motor
from ophyd_async.plan_stubs import ensure_connected

from configs import config_path
from devices import LimitError, MoveError
from devices.caproto_gc import collector_paused
from sim.config import load_config
from sim.optics.camera import nd_stats
from sim.optics.model import BeamAtCamera, OpticsModel
from sim.optics_train import optics_motors, optics_params
from tests.devices_system_helpers import (
    connect_async_beamline,
    connect_classic_beamline,
    run_in_loop,
)
from tests.epics_env import client_environment
from tests.ioc_fixture import REPO, ca_put, ca_read

pytestmark = pytest.mark.system

#: NDStats readings of both camera flavours (event fields ``beam_camera_<stat>``)
STATS = ("total", "max_value", "mean_value", "centroid_x", "centroid_y", "sigma_x", "sigma_y",
         "sigma_xy")
FLAVOURS = ("ophyd_async", "classic")


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)  # before connecting (FIELD_NOTES)


@pytest.fixture(scope="module")
def beamlines(RE, sim_beamline):
    classic = connect_classic_beamline(sim_beamline.config_path)
    yield {"ophyd_async": connect_async_beamline(RE, sim_beamline.config_path),
           "classic": classic}
    classic.destroy()


@pytest.fixture(params=FLAVOURS)
def bl(request, beamlines):
    return beamlines[request.param]


@pytest.fixture(scope="module")
def optics(sim_beamline):
    """The hidden optics model the simulator uses, and ``{DOF key: motor name}``."""
    full = sim_beamline.full_config
    camera = full.beamline.of_kind("camera")[0]
    return OpticsModel(optics_params(camera, full.simulation.optics)), \
        optics_motors(full.beamline)


# -- flavour-neutral helpers --------------------------------------------------------------

def get(signal):
    """A fresh (uncached) value of an ophyd-async or a classic ophyd signal."""
    if hasattr(signal, "get_value"):
        return run_in_loop(lambda: signal.get_value(cached=False))
    return signal.get(use_monitor=False)


def frame_of(camera) -> np.ndarray:
    """The camera's last image, (size_y, size_x)."""
    if asyncio.iscoroutinefunction(camera.frame):
        return run_in_loop(camera.frame)
    return camera.frame()


def snap(RE, camera) -> dict[str, float]:
    """One ``bp.count`` frame; its NDStats by name (total, centroid_x ...)."""
    docs = []
    RE(bp.count([camera]), lambda name, doc: name == "event" and docs.append(doc["data"]))
    assert len(docs) == 1
    return {stat: float(docs[0][f"{camera.name}_{stat}"]) for stat in STATS}


def positions(bl, names) -> dict[str, float]:
    """Motor readbacks by motor name, read from the IOC now."""
    return {name: float(get(bl.motor(name).user_readback)) for name in names}


def beam_at(optics, by_motor: dict[str, float]) -> BeamAtCamera:
    model, keys = optics
    return model.beam({key: by_motor[name] for key, name in keys.items()})


def centroid_px(beam: BeamAtCamera, camera) -> tuple[float, float]:
    """Where the model puts the centroid on the sensor, pixels (sim.optics.camera doc)."""
    return (beam.centroid_x_um / camera.pixel_um + (camera.size_x - 1) / 2,
            beam.centroid_y_um / camera.pixel_um + (camera.size_y - 1) / 2)


def on_sensor_flux(beam: BeamAtCamera) -> float:
    return beam.flux_ph_s * beam.fraction_on_sensor


def mv_all(RE, bl, targets: dict[str, float]) -> None:
    RE(bps.mv(*[arg for name, pos in targets.items() for arg in (bl.motor(name), pos)]))


def raw_frame(sim) -> None:
    """One frame through plain CA: cam1:Acquire = 1, put completion after the stats."""
    ca_put(sim.pv("CAM1:cam1:Acquire"), 1, sim.port)


def raw_positions(sim, names) -> dict[str, float]:
    cfg = sim.config
    return {n: float(ca_read(cfg.pv(cfg.motor(n).pv) + ".RBV", sim.port)[0]) for n in names}


# -- tests ----------------------------------------------------------------------------------

def test_every_optics_motor_moves_and_reads_back(RE, bl, sim_beamline, optics):
    cfg = sim_beamline.config
    names = list(optics[1].values())
    assert len(names) == 11
    start = positions(bl, names)
    targets = {}
    for name in names:  # 5 % of the range, towards the farther limit
        m = cfg.motor(name)
        step = 0.05 * m.span
        up = m.high_limit - start[name] >= start[name] - m.low_limit
        targets[name] = round(start[name] + (step if up else -step), m.precision)
        assert m.low_limit <= targets[name] <= m.high_limit
    try:
        mv_all(RE, bl, targets)
        device_rbv = positions(bl, names)
        raw_rbv = raw_positions(sim_beamline, names)
        for name in names:
            tol = cfg.motor(name).tolerance
            assert device_rbv[name] == pytest.approx(targets[name], abs=tol), name
            assert raw_rbv[name] == pytest.approx(targets[name], abs=tol), name
            assert abs(raw_rbv[name] - start[name]) > 10 * tol, name
    finally:
        mv_all(RE, bl, start)
    back = raw_positions(sim_beamline, names)
    for name in names:
        assert back[name] == pytest.approx(start[name], abs=cfg.motor(name).tolerance), name


def test_camera_stats_are_ndstats_of_the_served_image(RE, bl, sim_beamline):
    cam, cfg = bl.beam_camera, sim_beamline.config.of_kind("camera")[0]
    threshold = float(get(cam.centroid_threshold))
    stats0, driver0 = int(get(cam.stats_array_counter)), int(get(cam.array_counter))
    for i in range(1, 4):
        stats = snap(RE, cam)
        assert int(get(cam.stats_array_counter)) == stats0 + i
        assert int(get(cam.array_counter)) == driver0 + i
        image = frame_of(cam)
        assert image.shape == (cfg.size_y, cfg.size_x)
        assert image.min() >= 0 and image.max() <= cfg.max_count
        want = nd_stats(image, threshold)
        assert want["max_value"] > 100  # the beam is on the sensor
        assert stats["total"] == want["total"]
        for stat in STATS[1:]:
            assert stats[stat] == pytest.approx(want[stat], abs=1e-6), stat
        min_value = ca_read(sim_beamline.pv("CAM1:Stats1:MinValue_RBV"), sim_beamline.port)[0]
        assert min_value == want["min_value"]


def test_centroid_follows_vkb_pitch(RE, bl, sim_beamline, optics):
    cam, cam_cfg = bl.beam_camera, sim_beamline.config.of_kind("camera")[0]
    names = list(optics[1].values())
    pitch = bl.vkb.pitch
    p0 = float(get(pitch.user_readback))
    s0 = snap(RE, cam)
    want0 = centroid_px(beam_at(optics, positions(bl, names)), cam_cfg)
    assert (s0["centroid_x"], s0["centroid_y"]) == pytest.approx(want0, abs=1.0)
    shifts = {}
    try:
        for step in (3.0, -3.0):  # urad; the model gives ~9 px
            RE(bps.mv(pitch, p0 + step))
            s = snap(RE, cam)
            want = centroid_px(beam_at(optics, positions(bl, names)), cam_cfg)
            assert (s["centroid_x"], s["centroid_y"]) == pytest.approx(want, abs=1.0), step
            shifts[step] = s["centroid_y"] - s0["centroid_y"]
            assert abs(shifts[step]) > 5.0, shifts
            assert math.copysign(1, shifts[step]) == math.copysign(1, want[1] - want0[1])
            assert abs(s["centroid_x"] - s0["centroid_x"]) < 0.5  # a vertical mirror
    finally:
        RE(bps.mv(pitch, p0))
    assert math.copysign(1, shifts[3.0]) == -math.copysign(1, shifts[-3.0])
    assert snap(RE, cam)["centroid_y"] == pytest.approx(s0["centroid_y"], abs=0.2)


def test_shutter_takes_the_beam_off_the_camera(RE, bl, sim_beamline, optics):
    cam, cam_cfg = bl.beam_camera, sim_beamline.config.of_kind("camera")[0]
    full = sim_beamline.full_config
    exposure_s = float(get(cam.acquire_time))
    background = (full.simulation.optics.background_cps * exposure_s
                  * cam_cfg.size_x * cam_cfg.size_y)
    try:
        RE(bps.mv(bl.shutter, "CLOSED"))
        closed = snap(RE, cam)
    finally:
        RE(bps.mv(bl.shutter, "OPEN"))
    opened = snap(RE, cam)
    assert abs(closed["total"] - background) < 6 * math.sqrt(background), closed
    assert closed["max_value"] <= 5  # Poisson(0.1) dark pixels only
    beam = beam_at(optics, positions(bl, list(optics[1].values())))
    ring_fraction = float(get(bl.ring_current.current if hasattr(bl.ring_current, "current")
                              else bl.ring_current)) / full.simulation.ring.nominal_ma
    expected = (on_sensor_flux(beam) * full.simulation.optics.counts_per_photon * exposure_s
                * ring_fraction)
    assert opened["total"] - background == pytest.approx(expected, rel=0.1), opened
    assert opened["total"] > closed["total"] + 0.5 * expected


@pytest.mark.parametrize("flavour, motor_name", [("ophyd_async", "ssa_gap"),
                                                 ("classic", "dcm_pitch")])
def test_flux_at_the_sample_follows_the_optics(RE, beamlines, sim_beamline, optics, flavour,
                                               motor_name):
    """ssa_gap closed to its low limit, or dcm_pitch detuned by 20 urad: i0 drops by the
    model's transmission, det drops too, and both come back."""
    bl = beamlines[flavour]
    m_cfg = sim_beamline.config.motor(motor_name)
    motor, scaler, names = bl.motor(motor_name), bl.scaler, list(optics[1].values())
    start = float(get(motor.user_readback))
    target = m_cfg.low_limit if motor_name == "ssa_gap" else min(start + 20.0, m_cfg.high_limit)
    preset = float(get(scaler.preset_time))

    def counts() -> dict[str, float]:
        docs = []
        RE(bp.count([scaler], num=3), lambda n, d: n == "event" and docs.append(d["data"]))
        return {ch: float(np.mean([d[ch] for d in docs])) for ch in ("i0", "det")}

    RE(bps.mv(scaler.preset_time, 0.05))
    try:
        base, base_beam = counts(), beam_at(optics, positions(bl, names))
        try:
            RE(bps.mv(motor, target))
            low, low_beam = counts(), beam_at(optics, positions(bl, names))
        finally:
            RE(bps.mv(motor, start))
        back = counts()
    finally:
        RE(bps.mv(scaler.preset_time, preset))
    transmission = on_sensor_flux(low_beam) / on_sensor_flux(base_beam)
    assert transmission < 0.5
    assert low["i0"] / base["i0"] == pytest.approx(transmission, rel=0.05), (base, low)
    assert low["det"] < 0.6 * base["det"], (base, low)
    assert back["i0"] == pytest.approx(base["i0"], rel=0.03), (base, back)
    assert abs(back["det"] - base["det"]) < 5 * math.sqrt(base["det"] / 3) + 0.03 * base["det"]


def _check_hkb_pitch_on_camera(sim, optics, target: float) -> None:
    """The IOC's readback is at ``target`` and the camera's centroid_x is the model's."""
    names = list(optics[1].values())
    where = raw_positions(sim, names)
    assert where["hkb_pitch"] == pytest.approx(target, abs=sim.config.motor("hkb_pitch").tolerance)
    raw_frame(sim)
    cx = float(ca_read(sim.pv("CAM1:Stats1:CentroidX_RBV"), sim.port)[0])
    camera = sim.config.of_kind("camera")[0]
    assert cx == pytest.approx(centroid_px(beam_at(optics, where), camera)[0], abs=1.0)


def test_stock_epics_motor_drives_hkb_pitch(sim_beamline, optics):
    if ophyd.cl.name != "caproto":  # pyepics is not a dependency
        ophyd.set_cl("caproto")
    cfg = sim_beamline.config.motor("hkb_pitch")
    with collector_paused():  # caproto's callback-copy race (devices/caproto_gc.py)
        motor = EpicsMotor(sim_beamline.pv(cfg.pv), name="stock_hkb_pitch")
        motor.wait_for_connection(timeout=20)
    start = motor.position
    try:
        assert motor.limits == (cfg.low_limit, cfg.high_limit)
        assert motor.egu == "urad"
        motor.set(start - 4.0).wait(10)
        assert motor.position == pytest.approx(start - 4.0, abs=cfg.tolerance)
        assert motor.motor_done_move.get() == 1
        _check_hkb_pitch_on_camera(sim_beamline, optics, start - 4.0)
    finally:
        motor.set(start).wait(10)
        motor.destroy()
    _check_hkb_pitch_on_camera(sim_beamline, optics, start)


def test_stock_ophyd_async_motor_drives_hkb_pitch(RE, sim_beamline, optics):
    cfg = sim_beamline.config.motor("hkb_pitch")
    motor = Motor(sim_beamline.pv(cfg.pv), name="stock_async_hkb_pitch")
    RE(ensure_connected(motor, timeout=10))
    start = RE(bps.rd(motor)).plan_result
    try:
        RE(bps.mv(motor, start + 4.0))
        assert RE(bps.rd(motor)).plan_result == pytest.approx(start + 4.0, abs=cfg.tolerance)
        _check_hkb_pitch_on_camera(sim_beamline, optics, start + 4.0)
    finally:
        RE(bps.mv(motor, start))
    _check_hkb_pitch_on_camera(sim_beamline, optics, start)


def test_plain_ca_client_reads_the_stats(sim_beamline):
    raw_frame(sim_beamline)
    total = ca_read(sim_beamline.pv("CAM1:Stats1:Total_RBV"), sim_beamline.port)
    image = ca_read(sim_beamline.pv("CAM1:image1:ArrayData"), sim_beamline.port, timeout=5.0)
    camera = sim_beamline.config.of_kind("camera")[0]
    assert len(total) == 1 and len(image) == camera.size_x * camera.size_y
    assert float(total[0]) == float(np.asarray(image, np.int64).sum()) > 0


CAMERA_RECORDS = {
    "cam1:Acquire": "bo", "cam1:Acquire_RBV": "bi", "cam1:AcquireTime": "ao",
    "cam1:AcquireTime_RBV": "ai", "cam1:DetectorState_RBV": "mbbi",
    "cam1:ArrayCounter": "longout", "cam1:ArrayCounter_RBV": "longin",
    "cam1:ArraySizeX_RBV": "longin", "cam1:ArraySizeY_RBV": "longin",
    "image1:ArrayData": "waveform", "image1:ArrayCounter_RBV": "longin",
    "Stats1:CentroidThreshold": "ao", "Stats1:ArrayCounter_RBV": "longin",
    **{f"Stats1:{s}_RBV": "ai" for s in ("Total", "MaxValue", "MinValue", "MeanValue",
                                         "CentroidX", "CentroidY", "SigmaX", "SigmaY",
                                         "SigmaXY")},
}


def test_sim_list_shows_camera_records_and_optics_motors():
    """``python -m sim --list`` (what ``beamagent sim --list`` runs) for both configs."""
    configs = {name: config_path(name) for name in ("beamline.yaml",
                                                    "beamline_optics_hard.yaml")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "sim", "--list", "--config",
                                     str(path)], cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, path in configs.items()}
    listed = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        listed[name] = dict(line.split() for line in out.splitlines())
    for name, path in configs.items():
        beamline = load_config(path).beamline
        prefix = beamline.pv(beamline.of_kind("camera")[0].pv)
        camera = {pv.removeprefix(prefix): rtype for pv, rtype in listed[name].items()
                  if pv.startswith(prefix)}
        assert camera == CAMERA_RECORDS, name
        optics_pvs = [beamline.pv(beamline.motor(m).pv)
                      for m in optics_motors(beamline).values()]
        assert all(listed[name][pv] == "motor" for pv in optics_pvs), name
        assert len(optics_pvs) == (11 if name == "beamline.yaml" else 12)
    hard = listed["beamline_optics_hard.yaml"]
    assert hard["BL:VKB:BENDER:US"] == hard["BL:VKB:BENDER:DS"] == "motor"
    assert "BL:VKB:BENDER" not in hard


def test_optics_motor_limits_and_stop_behave_as_the_sample_stage(RE, bl, sim_beamline):
    """vkb_roll (urad): a put beyond HLM is refused with the motor, value and limits named,
    and STOP ends a long move early with the move reported as not done."""
    roll = bl.motor("vkb_roll")
    cfg = sim_beamline.config.motor("vkb_roll")
    start = float(get(roll.user_readback))
    with pytest.raises((FailedStatus, LimitError)) as err:
        RE(bps.mv(roll, cfg.high_limit + 1.0))
    assert f"vkb_roll to {cfg.high_limit + 1.0} urad outside limits" in repr(err.value) + \
        repr(err.value.__cause__)
    assert float(get(roll.user_readback)) == pytest.approx(start, abs=cfg.tolerance)
    target = cfg.low_limit if start > 0 else cfg.high_limit  # >= 1 s at VELO
    if hasattr(roll.user_readback, "get_value"):  # ophyd-async
        async def move_then_stop():
            status = roll.set(target)
            await asyncio.sleep(0.3)
            await roll.stop(success=False)
            with pytest.raises(RuntimeError, match="was stopped"):
                await status
            await wait_for_value(roll.motor_done_move, 1, timeout=5)
        run_in_loop(move_then_stop)
    else:
        status = roll.set(target)
        time.sleep(0.3)
        roll.stop()
        with pytest.raises(MoveError, match="move of vkb_roll"):
            status.wait(10)
    stopped_at = float(get(roll.user_readback))
    assert min(start, target) < stopped_at < max(start, target)
    RE(bps.mv(roll, start))


def test_caproto_get_reads_the_stats(sim_beamline):
    raw_frame(sim_beamline)
    exe = Path(sys.executable).with_name("caproto-get")
    env = {**os.environ, **client_environment(sim_beamline.port)}
    pvs = [sim_beamline.pv(f"CAM1:Stats1:{s}_RBV") for s in ("Total", "CentroidX", "SigmaY")]
    out = subprocess.run([str(exe), "--no-repeater", "--timeout", "5", *pvs],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    for pv in pvs:
        line = next(ln for ln in lines if ln.startswith(pv))
        assert float(line.split()[-1].strip("[]")) > 0
