"""Helpers for the agent service tests: free ports, service subprocesses, a sync requester."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
import zmq

ENGINE = {
    "coordinates": [
        {"name": "x", "low": -10.0, "high": 10.0, "units": "mm", "velocity": 5.0},
        {"name": "y", "low": -10.0, "high": 10.0, "units": "mm", "velocity": 5.0},
    ],
    "value": "det_norm",
    "mode": "mapping",
    "initial_design": {"n_points": 8},
    "stop": {"max_points": 200},
}


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_agent_config(directory: Path, **engine_overrides) -> tuple[Path, dict[str, int]]:
    """An agent YAML on free ports with a checkpoint dir; returns (path, ports)."""
    ports = {k: free_tcp_port() for k in ("request_port", "measurement_port", "status_port")}
    config = {
        "engine": {**ENGINE, **engine_overrides},
        "service": {**ports, "checkpoint_dir": str(directory / "checkpoint"),
                    "status_interval_s": 0.2},
        "reducers": [{"kind": "scalar", "value_name": "det_norm", "detector": "det",
                      "monitor": "i0", "positions": {"x": "sample_x", "y": "sample_y"}}],
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ports


def start_service(config_path: Path, log_path: Path) -> subprocess.Popen:
    """``python -m agent --config ...`` in its own process group (kill with kill_group)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


class Requester:
    """A synchronous DEALER client speaking the service's JSON envelopes."""

    def __init__(self, address: str):
        self.address = address
        self._ctx = zmq.Context()
        self._ids = itertools.count(1)
        self._sock = None

    def _socket(self):
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.DEALER)
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.connect(self.address)
        return self._sock

    def raw(self, payload: bytes, timeout_s: float = 5.0) -> dict | None:
        """Send raw bytes; the reply envelope, or None on timeout (socket then reset)."""
        sock = self._socket()
        sock.send_multipart([b"", payload])
        if not sock.poll(int(timeout_s * 1000)):
            sock.close(linger=0)
            self._sock = None
            return None
        return json.loads(sock.recv_multipart()[-1])

    def request(self, body: dict, timeout_s: float = 5.0) -> dict | None:
        rid = next(self._ids)
        return self.raw(json.dumps({**body, "request_id": rid}).encode(), timeout_s)

    def status(self, timeout_s: float = 5.0) -> dict:
        reply = self.request({"type": "status"}, timeout_s)
        assert reply is not None and reply["type"] == "status", reply
        return reply["status"]

    def wait_ready(self, proc: subprocess.Popen | None = None, timeout_s: float = 30.0) -> dict:
        """Poll status with a bound until the service answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}")
            reply = self.request({"type": "status"}, timeout_s=0.5)
            if reply is not None:
                return reply["status"]
        raise TimeoutError(f"service at {self.address} not ready within {timeout_s} s")

    def wait_until(self, predicate, timeout_s: float = 10.0) -> dict:
        """Poll status until predicate(status) holds; returns that status."""
        deadline = time.monotonic() + timeout_s
        status = self.status()
        while not predicate(status):
            if time.monotonic() > deadline:
                raise TimeoutError(f"status condition not met within {timeout_s} s: "
                                   f"{status['service']}")
            time.sleep(0.01)
            status = self.status()
        return status

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
        self._ctx.term()
