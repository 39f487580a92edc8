"""The ``beamagent sim`` command: --list, clean shutdown, caproto-get, Nagle fix."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from caproto.threading.client import Context

from tests.epics_env import free_port
from tests.ioc_fixture import REPO, running_sim

CONFIG = REPO / "configs" / "beamline.yaml"


def test_list_prints_records_and_types():
    out = subprocess.run([sys.executable, "-m", "sim", "--list", "--config", str(CONFIG)],
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=True)
    lines = [line.split() for line in out.stdout.splitlines()]
    assert ["BL:SAMPLE:X", "motor"] in lines and ["BL:MONO:ENERGY", "motor"] in lines
    assert ["BL:SCALER1", "scaler"] in lines and ["BL:SCALER1:NACQ", "longout"] in lines
    assert ["BL:RING:CURRENT", "ai"] in lines and ["BL:SHUTTER:STATUS", "bi"] in lines
    assert all(len(parts) == 2 for parts in lines)


def test_bad_config_exits_2_naming_the_key(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("sample: particles", "sample: blobs"))
    out = subprocess.run([sys.executable, "-m", "sim", "--list", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2 and "sample" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.system
def test_sigterm_shuts_down_cleanly():
    port = free_port()
    with running_sim(CONFIG, port) as sim:
        assert "serving" in sim.log() and f"127.0.0.1:{port}" in sim.log()
        os.killpg(sim.process.pid, signal.SIGTERM)
        assert sim.process.wait(10) == 0
        assert "Traceback" not in sim.log()


@pytest.mark.system
def test_second_ioc_on_a_served_port_refuses_to_start(sim_beamline):
    """caproto would fall back to a random TCP port and split clients; we exit 1 instead."""
    out = subprocess.run([sys.executable, "-m", "sim", "--port", str(sim_beamline.port)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 1 and "in use" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.system
def test_caproto_get_cli_reads_a_pv(sim_beamline):
    exe = shutil.which("caproto-get") or str(Path(sys.executable).parent / "caproto-get")
    out = subprocess.run([exe, "--no-repeater", "BL:SAMPLE:X.EGU", "BL:SAMPLE:X.HLM"],
                         capture_output=True, text=True, timeout=30, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert "mm" in out.stdout and "10" in out.stdout


@pytest.mark.system
def test_concurrent_reads_are_fast(sim_beamline):
    """Nagle fix: with two requests in flight, replies do not stall ~40 ms (FIELD_NOTES)."""
    ctx = Context()
    try:
        pvs = ctx.get_pvs("BL:SAMPLE:X.RBV", "BL:SAMPLE:Y.RBV")
        for pv in pvs:
            pv.wait_for_connection(timeout=10)
        times = []
        with ThreadPoolExecutor(2) as pool:
            for _ in range(30):
                t0 = time.perf_counter()
                list(pool.map(lambda pv: pv.read(timeout=2), pvs))
                times.append(time.perf_counter() - t0)
        # the Nagle stall is ~40 ms per pair; healthy replies take ~1 ms (FIELD_NOTES)
        assert statistics.median(times) < 0.025, f"median {statistics.median(times):.4f} s"
    finally:
        ctx.disconnect()
