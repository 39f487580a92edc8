"""A burst of SIGTERMs (what a dying parent's PR_SET_PDEATHSIG and a process-group kill add up
to) stops the agent service and the reducer process cleanly: no deadlock in the handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.service_helpers import (
    Requester,
    free_tcp_port,
    kill_group,
    start_service,
    write_agent_config,
)

pytestmark = pytest.mark.system

BURST = 20
EXIT_BOUND_S = 10.0


def burst_and_wait(proc: subprocess.Popen) -> float:
    """Send BURST SIGTERMs back to back; seconds until the process exited (bounded)."""
    t0 = time.monotonic()
    for _ in range(BURST):
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # already gone: the first ones did it
            break
    try:
        proc.wait(timeout=EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        pytest.fail(f"pid {proc.pid} still running {EXIT_BOUND_S} s after {BURST} SIGTERMs")
    return time.monotonic() - t0


def test_a_burst_of_sigterms_stops_the_service_cleanly(tmp_path):
    config, ports = write_agent_config(tmp_path)
    log = tmp_path / "service.log"
    requester = Requester(f"tcp://127.0.0.1:{ports['request_port']}")
    exits = []
    try:
        for trial in range(3):
            proc = start_service(config, log)
            try:
                requester.wait_ready(proc)
                requester.request({"type": "ask", "n": 1})  # a worker thread, a lock in use
                exits.append(burst_and_wait(proc))
            finally:
                kill_group(proc)
            assert proc.returncode == 0, f"trial {trial}: exit code {proc.returncode}"
    finally:
        requester.close()
    assert log.read_text().count("stopped cleanly") == 3
    print(f"service exit after {BURST} SIGTERMs: {', '.join(f'{t:.2f}' for t in exits)} s")


def test_a_burst_of_sigterms_stops_the_reducer_process(tmp_path):
    config, _ = write_agent_config(tmp_path)
    proxy = f"tcp://127.0.0.1:{free_tcp_port()}"  # nobody publishes: it just waits
    for trial in range(3):
        log = tmp_path / f"reducers-{trial}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.reducers", "--config", str(config), "--proxy",
                 proxy], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while "reducing documents" not in log.read_text():  # its handlers are installed
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            burst_and_wait(proc)
        finally:
            kill_group(proc)
        assert proc.returncode == 0, log.read_text()
        assert "stopped:" in log.read_text()
