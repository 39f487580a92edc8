"""Fault injection: the IOC SIGKILLed mid-move during ``gp_scan`` and restarted 3 s later.

The simulator runs with autosave (as a real IOC restores its settings and positions), on a
port of its own; the RunEngine with its agent runs in a subprocess
(``tests.reconnect_scenarios``). The run must wait for the reconnection, verify, redo the cut
move and complete its budget: 0 points lost, 0 duplicates, 0 false arrivals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.epics_env import client_environment, free_port
from tests.ioc_fixture import REPO, running_sim, stop_process_group
from tests.plans_helpers import write_agent_yaml
from tests.test_devices_faults_system import read_event

pytestmark = pytest.mark.system

POINTS = 8
KILL_AFTER = 3  # points measured before the kill
DOWN_S = 3.0  # the IOC is away this long


def sim_config(tmp_path: Path, autosave: bool) -> Path:
    data = yaml.safe_load((REPO / "configs" / "beamline.yaml").read_text())
    if autosave:
        data["simulation"]["autosave"] = {"path": str(tmp_path / "autosave.json"),
                                          "period_s": 0.2}
    path = tmp_path / "beamline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_client(flavour: str, port: int, config: Path, agent: Path) -> subprocess.Popen:
    env = dict(os.environ, **client_environment(port), OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reconnect_scenarios", flavour, "--port", str(port),
         "--config", str(config), "--agent", str(agent), "--points", str(POINTS),
         "--kill-after", str(KILL_AFTER)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def restart_ioc_at(config: Path, port: int, start_client, event: str, event_timeout_s: float,
                   result_timeout_s: float) -> dict:
    """Start the IOC, then the client (``start_client()``); SIGKILL the IOC when the client
    prints ``event``, restart it DOWN_S later, and return the client's result with
    ``restarted_after_s`` and the simulator's autosave log lines."""
    with running_sim(config, port) as sim:
        client = start_client()
        try:
            seen = read_event(client, event_timeout_s)
            assert seen["event"] == event, seen
            os.killpg(sim.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            sim.process.wait(5)
        except BaseException:
            stop_process_group(client)
            raise
    try:
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed)))
        with running_sim(config, port) as sim:
            restarted = time.monotonic() - killed
            result = read_event(client, result_timeout_s)
            result["restarted_after_s"] = round(restarted, 2)
            result["sim_log"] = [line for line in sim.log().splitlines() if "autosave" in line]
    finally:
        stop_process_group(client)
    return result


def kill_and_restart(flavour: str, tmp_path: Path, autosave: bool) -> dict:
    port, config = free_port(), sim_config(tmp_path, autosave)
    agent = write_agent_yaml(tmp_path / "agent.yaml")
    return restart_ioc_at(config, port, lambda: start_client(flavour, port, config, agent),
                          "moving", 90, 120)


@pytest.mark.parametrize("flavour, autosave", [("ophyd_async", True), ("classic", True),
                                               ("ophyd_async", False)],
                         ids=["ophyd_async", "classic", "ophyd_async-no-autosave"])
def test_ioc_restart_mid_move_completes_the_budget(tmp_path, flavour, autosave):
    result = kill_and_restart(flavour, tmp_path, autosave)
    print(f"\n{flavour}, autosave {autosave}: IOC SIGKILLed mid-move of point {KILL_AFTER + 1}, "
          f"connectable again after {result['restarted_after_s']} s: {result}")
    assert result["error"] is None, result
    assert result["exit_status"] == "success", result
    assert (result["measured"], result["lost"]) == (POINTS, 0), result
    assert result["duplicates"] == 0, result
    assert result["false_arrivals"] == 0, result
    assert len(result["reconnects"]) == 1, result
    recovery = result["reconnects"][0]
    assert recovery["reconnect_point"] == KILL_AFTER, recovery
    assert "sample_x" in recovery["reconnect_devices"], recovery
    changed = recovery["reconnect_settings_changed"]
    if autosave:  # the IOC restored its settings: nothing to report
        assert changed == "", recovery
    else:  # back to the IOC's defaults: the exposure time is reported, loudly
        assert "preset_time: 0.01 -> 1.0" in changed, recovery
        assert any("settings changed across the reconnect" in w for w in result["warnings"])
