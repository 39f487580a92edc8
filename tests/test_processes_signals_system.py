"""Signals: the demo's children die with it, and the simulator's shutdown is bounded.

- a parent started the way ``beamagent demo`` starts its children (``plans.processes``) is
  SIGKILLed: no child survives ``GONE_WITHIN_S``;
- a burst of SIGTERMs (what the parent-death signal can look like) during a move stops the
  simulator cleanly (exit 0, autosave written) within ``GONE_WITHIN_S``;
- a shutdown that hangs is cut at its deadline (``sim.server.Shutdown``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from configs import DEFAULT_BEAMLINE
from tests.epics_env import free_port
from tests.ioc_fixture import REPO, ca_put, spawn_sim, stop_process_group, wait_connectable
from tests.plans_helpers import write_agent_yaml

pytestmark = pytest.mark.system

GONE_WITHIN_S = 5.0
PROBE = "BL:RING:CURRENT"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids, timeout_s: float) -> tuple[list[int], float]:
    """Poll until no pid in ``pids`` is alive; returns (survivors, seconds waited)."""
    t0 = time.monotonic()
    while (left := [p for p in pids if alive(p)]) and time.monotonic() - t0 < timeout_s:
        time.sleep(0.02)
    return left, time.monotonic() - t0


def read_children(parent: subprocess.Popen, timeout_s: float) -> list[int]:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(parent.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    line = box[0] if box else ""
    if not line.startswith("CHILDREN"):
        stop_process_group(parent)
        raise AssertionError(f"parent printed {line!r}; stderr: {parent.stderr.read()[-2000:]}")
    return [int(p) for p in line.split()[1:]]


def kill_parent_trials(tmp_path: Path, trials: int, with_agent: bool) -> list[dict]:
    results = []
    agent = write_agent_yaml(tmp_path / "agent.yaml") if with_agent else None
    for trial in range(trials):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        args = [sys.executable, "-m", "tests.process_scenarios", "--port", str(free_port()),
                "--dir", str(folder), *(["--agent", str(agent)] if agent else [])]
        parent = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True,
                                  env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        children: list[int] = []
        try:
            children = read_children(parent, 90)
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(5)
            left, waited = wait_gone(children, GONE_WITHIN_S)
            results.append({"children": len(children), "left": left, "s": round(waited, 2)})
        finally:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stop_process_group(parent)
    return results


def test_sigkill_of_the_parent_leaves_no_child(tmp_path):
    """Three trials, each with the simulator and the agent service as children."""
    trials = 3
    results = kill_parent_trials(tmp_path, trials, with_agent=True)
    print(f"SIGKILL of the parent (simulator + agent), {trials} trials: {results}")
    assert all(r["children"] == 2 for r in results), results
    assert [r["left"] for r in results] == [[]] * trials, results


def sigterm_burst(pid: int, n: int = 50, gap_s: float = 0.0005) -> None:
    for _ in range(n):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        time.sleep(gap_s)


def test_sigterm_burst_mid_move_stops_the_simulator_cleanly(tmp_path):
    """Two trials; each bursts 50 SIGTERMs while sample_x moves with a put pending."""
    results = []
    for trial in range(2):
        port, autosave = free_port(), tmp_path / f"auto{trial}.json"
        with open(tmp_path / f"sim{trial}.log", "wb") as log:
            proc = spawn_sim(DEFAULT_BEAMLINE, port, log, ("--autosave", str(autosave)))
        try:
            wait_connectable(PROBE, port, 20, proc)
            mover = threading.Thread(target=_quietly, args=(ca_put, "BL:SAMPLE:X", 9.0, port),
                                     daemon=True)
            mover.start()
            time.sleep(0.3)  # mid-move: 9 mm at 5 mm/s
            t0 = time.monotonic()
            sigterm_burst(proc.pid)
            try:
                code = proc.wait(GONE_WITHIN_S)
            except subprocess.TimeoutExpired:
                code = "still running"
            results.append({"exit": code, "s": round(time.monotonic() - t0, 2),
                            "autosaved": autosave.exists()})
        finally:
            stop_process_group(proc)
    print(f"SIGTERM burst (50 in ~25 ms) mid-move, 2 trials: {results}")
    assert [r["exit"] for r in results] == [0, 0], results
    assert all(r["autosaved"] for r in results), results


def _quietly(fn, *args) -> None:
    with contextlib.suppress(Exception):  # the IOC goes away under the pending put
        fn(*args)


HANGING = """
import threading
from sim.server import Shutdown
s = Shutdown(deadline_s=0.5, last_words=lambda: print("last words", flush=True))
s.install()
print("ready", flush=True)
threading.Event().wait()  # a shutdown that never finishes
"""


def test_a_hanging_shutdown_is_cut_at_its_deadline():
    proc = subprocess.Popen([sys.executable, "-c", HANGING], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        sigterm_burst(proc.pid, n=20)
        code = proc.wait(GONE_WITHIN_S)
        waited = time.monotonic() - t0
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    from sim.server import EXIT_SHUTDOWN_DEADLINE

    print(f"hanging shutdown: exit {code} after {waited:.2f} s")
    assert code == EXIT_SHUTDOWN_DEADLINE
    assert 0.5 <= waited < 2.0
    assert "last words" in out and "more signals ignored" in err, (out, err)
