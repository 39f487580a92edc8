"""Fault injection: the IOC SIGKILLed mid-evaluation of ``align`` (at the camera trigger) and
restarted 3 s later, ophyd-async devices.

As in ``tests.test_reconnect_system`` (gp_scan): the simulator runs with autosave, on a port of
its own, and the RunEngine in a subprocess (``tests.align_reconnect_scenarios``). The run
must wait for the reconnection, verify, redo the cut evaluation and complete its budget:
0 evaluations lost, 0 repeated, no event saved for the cut one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.epics_env import client_environment, free_port
from tests.ioc_fixture import REPO
from tests.test_reconnect_system import restart_ioc_at, sim_config

pytestmark = pytest.mark.system

EVALUATIONS = 6
KILL_AFTER = 2  # evaluations saved before the kill


def start_client(port: int, config: Path) -> subprocess.Popen:
    env = dict(os.environ, **client_environment(port), OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.align_reconnect_scenarios", "--port", str(port),
         "--config", str(config), "--evaluations", str(EVALUATIONS),
         "--kill-after", str(KILL_AFTER)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


@pytest.mark.timeout(120)
def test_ioc_restart_mid_evaluation_completes_the_align_budget(tmp_path):
    port, config = free_port(), sim_config(tmp_path, autosave=True)
    result = restart_ioc_at(config, port, lambda: start_client(port, config), "triggering",
                            60, 90)
    print(f"\nalign: IOC SIGKILLed at the camera trigger of evaluation {KILL_AFTER + 1}: "
          f"{result}")
    assert result["held_until_gone"] is True, result
    assert result["error"] is None, result
    assert result["exit_status"] == "success", result
    assert result["evaluations"] == EVALUATIONS, result
    # one event per evaluation, none for the cut one: 0 lost, 0 repeated, each where proposed
    assert (result["measured"], result["proposals"]) == (EVALUATIONS, EVALUATIONS), result
    assert result["duplicates"] == 0 and result["false_arrivals"] == 0, result
    assert len(result["reconnects"]) == 1, result
    recovery = result["reconnects"][0]
    assert recovery["reconnect_point"] == KILL_AFTER, recovery
    assert "beam_camera" in recovery["reconnect_devices"], recovery
    assert recovery["reconnect_settings_changed"] == "", recovery
