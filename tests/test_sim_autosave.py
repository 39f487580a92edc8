"""Simulator autosave: motor positions/settings and the scaler's TP survive a restart.

In-process (SimBeamline, no CA) for the file and the restore; one system test kills and
restarts ``python -m sim`` and reads the values back over Channel Access.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from sim.autosave import Autosave, AutosaveState
from sim.beamline import SimBeamline
from sim.config import load_config
from tests.epics_env import free_port
from tests.ioc_fixture import REPO, ca_put, ca_read, running_sim

CONFIG = REPO / "configs" / "beamline.yaml"


def write_config(tmp_path: Path, **autosave) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    data["simulation"]["autosave"] = autosave
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "beamline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def sim_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("sim") and r.levelno >= logging.WARNING]


async def started(config_path: Path, **kwargs) -> SimBeamline:
    bl = SimBeamline(load_config(config_path, **kwargs))
    await bl.initialise()
    return bl


async def change_state(bl: SimBeamline) -> None:
    await bl.motors["sample_x"].val.write(2.5)  # completes when the move has ended
    await bl.motors["sample_y"].off.write(0.75)
    await bl.motors["sample_y"].dir.write("Neg")
    await bl.motors["sample_y"].hlm.write(4.0)
    await bl.motors["sample_x"].velo.write(8.0)
    await bl.scaler.tp.write(0.05)


async def test_restart_restores_positions_settings_and_tp(tmp_path):
    config = write_config(tmp_path, path=str(tmp_path / "auto.json"), period_s=1.0)
    bl = await started(config)
    await change_state(bl)
    y_rbv, y_limits = bl.motors["sample_y"].rbv.value, bl.motors["sample_y"].user_limits()
    assert bl.save_autosave()
    assert not bl.save_autosave()  # unchanged: not rewritten
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    again = await started(config)
    x, y = again.motors["sample_x"], again.motors["sample_y"]
    assert x.rbv.value == pytest.approx(2.5) and x.val.value == pytest.approx(2.5)
    assert x.position == pytest.approx(2.5)  # the hidden physics sees the sample there too
    assert x.velo.value == pytest.approx(8.0)
    assert y.off.value == pytest.approx(0.75) and y.dir.value == "Neg"
    assert y.rbv.value == pytest.approx(y_rbv)
    assert y.user_limits() == pytest.approx(y_limits) and y.hlm.value == pytest.approx(4.0)
    assert again.scaler.tp.value == pytest.approx(0.05)
    assert any(r.startswith("sample_x=2.5") for r in again.restored)
    await x.val.write(2.0)  # and it still moves, from where it was
    assert x.rbv.value == pytest.approx(2.0)


async def test_off_by_default_and_cli_path_overrides(tmp_path):
    bl = await started(CONFIG)
    assert bl.autosave is None and not bl.save_autosave()
    config = write_config(tmp_path, path=str(tmp_path / "from_config.json"), period_s=7.0)
    bl = await started(config, autosave=tmp_path / "from_cli.json")
    assert bl.autosave.path == tmp_path / "from_cli.json" and bl.autosave.period_s == 7.0
    await bl.scaler.tp.write(0.2)
    bl.save_autosave()
    assert (tmp_path / "from_cli.json").exists() and not (tmp_path / "from_config.json").exists()


async def test_missing_file_is_a_first_start(tmp_path, caplog):
    config = write_config(tmp_path, path=str(tmp_path / "none" / "auto.json"))
    with caplog.at_level(logging.WARNING):
        bl = await started(config)
    assert bl.restored == [] and not sim_warnings(caplog)
    assert bl.scaler.tp.value == 1.0 and bl.motors["sample_x"].rbv.value == 0.0
    assert bl.save_autosave() and (tmp_path / "none" / "auto.json").exists()


@pytest.mark.parametrize("content", [
    "{not json", "", "[]", '{"version": 1, "motors": {"sample_x": {"motor": "left"}}}',
    '{"version": 1, "scaler": {"tp": -1}}', '{"version": 2}', "[" * 5000,
])
async def test_corrupt_file_is_logged_and_ignored(tmp_path, caplog, content):
    path = tmp_path / "auto.json"
    path.write_text(content)
    config = write_config(tmp_path, path=str(path))
    with caplog.at_level(logging.WARNING):
        bl = await started(config)
    assert bl.restored == [] and bl.scaler.tp.value == 1.0
    assert bl.motors["sample_x"].rbv.value == 0.0
    warnings = sim_warnings(caplog)
    assert len(warnings) == 1 and "corrupt, ignored" in warnings[0] and str(path) in warnings[0]


async def test_unknown_motor_and_out_of_travel_position_are_skipped(tmp_path, caplog):
    path = tmp_path / "auto.json"
    bl = await started(write_config(tmp_path, path=str(path)))
    await bl.motors["sample_x"].val.write(1.5)
    state = json.loads(bl.autosave_state().model_dump_json())
    state["motors"]["gone_motor"] = state["motors"]["sample_x"]
    state["motors"]["sample_y"]["motor"] = state["motors"]["sample_y"]["load"] = 1e6
    path.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING):
        again = await started(write_config(tmp_path, path=str(path)))
    assert again.motors["sample_x"].rbv.value == pytest.approx(1.5)
    assert again.motors["sample_y"].rbv.value == 0.0
    text = caplog.text
    assert "'gone_motor' is not in this config" in text and "beyond the travel ends" in text


async def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "auto.json"
    bl = await started(write_config(tmp_path, path=str(path)))
    assert bl.save_autosave()
    before = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    await bl.scaler.tp.write(0.3)
    assert not bl.save_autosave()  # logged, not raised
    assert path.read_text() == before  # the previous save is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.json", "beamline.yaml"]
    monkeypatch.undo()
    assert bl.save_autosave()
    assert AutosaveState.model_validate_json(path.read_text()).scaler.tp == 0.3


async def test_periodic_save(tmp_path):
    path = tmp_path / "auto.json"
    bl = await started(write_config(tmp_path, path=str(path), period_s=0.05))
    task = asyncio.create_task(bl.run_background())
    try:
        await bl.scaler.tp.write(0.07)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            saved = Autosave(path).load()
            if saved is not None and saved.scaler.tp == 0.07:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("TP=0.07 not autosaved within 5 s")
    finally:
        task.cancel()


def wait_for_file(path: Path, predicate, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
            if predicate(data):
                return data
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not reach the expected state within {timeout_s} s")


@pytest.mark.system
def test_sim_killed_and_restarted_restores_motors_and_tp(tmp_path):
    """SIGKILL after the periodic save, then SIGTERM (the shutdown save): both restore."""
    path = tmp_path / "auto.json"
    fast = write_config(tmp_path / "fast", path=str(tmp_path / "unused.json"), period_s=0.2)
    slow = write_config(tmp_path / "slow", path=str(tmp_path / "unused.json"), period_s=600)
    port = free_port()
    args = ("--autosave", str(path))  # the CLI overrides the config's path
    with running_sim(fast, port, extra_args=args) as sim:
        ca_put(sim.pv("SAMPLE:X"), 3.0, port)  # put completion: the move has ended
        ca_put(sim.pv("SAMPLE:Y.OFF"), 0.5, port)
        ca_put(sim.pv("SCALER1.TP"), 0.05, port)
        wait_for_file(path, lambda d: d["scaler"]["tp"] == 0.05
                      and d["motors"]["sample_y"]["off"] == 0.5
                      and abs(d["motors"]["sample_x"]["load"] - 3.0) < 1e-9)
        os.killpg(sim.process.pid, signal.SIGKILL)
        sim.process.wait(10)
    with running_sim(slow, port, extra_args=args) as sim:  # no periodic save in this run
        assert ca_read(sim.pv("SAMPLE:X.RBV"), port)[0] == pytest.approx(3.0)
        assert ca_read(sim.pv("SAMPLE:X.VAL"), port)[0] == pytest.approx(3.0)
        assert ca_read(sim.pv("SAMPLE:Y.OFF"), port)[0] == pytest.approx(0.5)
        assert ca_read(sim.pv("SAMPLE:Y.RBV"), port)[0] == pytest.approx(0.5)
        assert ca_read(sim.pv("SCALER1.TP"), port)[0] == pytest.approx(0.05)
        banner = next(line for line in sim.log().splitlines() if "autosave" in line)
        assert str(path) in banner and "sample_x=3.0" in banner and "TP=0.05" in banner
        ca_put(sim.pv("SAMPLE:X"), -2.0, port)
        os.killpg(sim.process.pid, signal.SIGTERM)  # at once: only the shutdown save has it
        assert sim.process.wait(10) == 0
    assert json.loads(path.read_text())["motors"]["sample_x"]["load"] == pytest.approx(-2.0)
    with running_sim(slow, port, extra_args=args) as sim:
        assert ca_read(sim.pv("SAMPLE:X.RBV"), port)[0] == pytest.approx(-2.0)
        assert ca_read(sim.pv("SCALER1.TP"), port)[0] == pytest.approx(0.05)
