"""pytest plugin: the simulated beamline as a subprocess IOC (registered in conftest.py).

- ``sim_beamline`` (session): ``python -m sim`` on ``tests.epics_env.CA_PORT``, the port the
  client environment of this pytest process points at. Yields a :class:`RunningSim`.
- ``running_sim(config_path, port)``: context manager for tests that kill or restart an IOC.
  Recommended for disconnect tests: serve on a *free port of its own* and run the CA client in
  a subprocess whose env is ``tests.epics_env.client_environment(port)`` (libca reads the env
  once per process). Serving on CA_PORT instead only works while the session IOC is not
  running: ``running_sim`` raises if the port is already served, and ``python -m sim`` itself
  exits 1 on a taken port (two servers on one port split the clients, FIELD_NOTES).
- Use ``sim_beamline`` by name (this plugin provides it); importing the fixture function into
  a test module makes pytest build a second copy, which here shares the one IOC anyway.
- ``ca_read(pv, port)``: a CA read straight to ``127.0.0.1:port`` over TCP (no UDP search,
  no repeater), used as the readiness probe.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import caproto as ca
import pytest

from configs import DEFAULT_BEAMLINE
from configs.schema import BeamlineConfig
from plans.processes import stop_process_group
from sim.config import FullConfig, load_config
from sim.server import server_environment
from tests.epics_env import CA_PORT

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20.0


@dataclass
class RunningSim:
    port: int
    config_path: Path
    config: BeamlineConfig  # the validated ``beamline:`` section
    full_config: FullConfig  # both sections (simulation: is hidden physics)
    process: subprocess.Popen
    log_path: Path

    def pv(self, suffix: str) -> str:
        return self.config.pv(suffix)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class CaPutError(RuntimeError):
    """The server answered a put with a CA error (e.g. ECA_PUTFAIL for a rejected value)."""


@contextlib.contextmanager
def _raw_channel(pv: str, port: int, host: str, timeout: float):
    """A connected CA channel over one TCP circuit to ``host:port`` (no search, no repeater).

    Yields ``(chan, send, until)``: ``until(predicate)`` processes replies until one matches.
    """
    circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=(host, port), priority=0)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        circuit.our_address = sock.getsockname()
        chan = ca.ClientChannel(pv, circuit)

        def send(*commands) -> None:
            sock.sendall(b"".join(circuit.send(*commands)))

        def until(predicate):
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"{host}:{port} closed the circuit")
                commands, _ = circuit.recv(data)
                for command in commands:
                    if not isinstance(command, ca.ErrorResponse):
                        circuit.process_command(command)
                    if predicate(command):
                        return command
            raise TimeoutError(f"no answer for {pv} from {host}:{port} in {timeout} s")

        send(ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
             chan.host_name(socket.gethostname()), chan.client_name(getpass.getuser()),
             chan.create())
        until(lambda c: isinstance(c, ca.CreateChanResponse))
        yield chan, send, until


def ca_read(pv: str, port: int, host: str = "127.0.0.1", timeout: float = 1.0):
    """Read ``pv`` from the CA server at ``host:port``; returns the value array.

    Raises OSError/TimeoutError if the server is not there or does not answer in ``timeout``.
    """
    with _raw_channel(pv, port, host, timeout) as (chan, send, until):
        send(chan.read())
        return until(lambda c: isinstance(c, ca.ReadNotifyResponse)).data


def ca_put(pv: str, value, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Put with completion (WriteNotify); returns when the server reports completion.

    Raises:
        CaPutError: the server rejected the put (CA ErrorResponse), naming its message.
        TimeoutError: no completion within ``timeout`` s.
    """
    with _raw_channel(pv, port, host, timeout) as (chan, send, until):
        send(chan.write([value], notify=True))
        reply = until(lambda c: isinstance(c, ca.WriteNotifyResponse | ca.ErrorResponse))
        if isinstance(reply, ca.ErrorResponse):
            message = bytes(reply.error_message).rstrip(b"\0").decode(errors="replace")
            raise CaPutError(f"put {pv}={value!r} rejected: {message}")


def wait_connectable(pv: str, port: int, timeout_s: float = START_TIMEOUT_S,
                     process: subprocess.Popen | None = None) -> float:
    """Poll ``ca_read`` until it answers; returns seconds waited. Raises TimeoutError."""
    t0 = time.monotonic()
    while True:
        try:
            ca_read(pv, port, timeout=0.5)
            return time.monotonic() - t0
        except (OSError, TimeoutError, ca.CaprotoError):
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"IOC exited with {process.returncode} before serving {pv}")
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{pv} on port {port} not connectable within {timeout_s} s")
        time.sleep(0.05)


def spawn_sim(config_path: Path | str, port: int, log_file, extra_args=()) -> subprocess.Popen:
    env = dict(os.environ, **server_environment(port), OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "sim", "--port", str(port), "--config", str(config_path),
           *extra_args]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)


@contextlib.contextmanager
def running_sim(config_path: Path | str = DEFAULT_BEAMLINE, port: int = CA_PORT, *,
                extra_args=(), timeout_s: float = START_TIMEOUT_S) -> Iterator[RunningSim]:
    """Start ``python -m sim`` on ``port``, wait until connectable, stop it on exit."""
    config_path = Path(config_path)
    full = load_config(config_path)
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        raise RuntimeError(f"port {port} is already served; stop that IOC or use another port")
    probe = full.beamline.pv(full.beamline.ring_current_pv)
    log_path = Path(tempfile.mkstemp(prefix=f"sim-{port}-", suffix=".log")[1])
    with open(log_path, "wb") as log_file:
        proc = spawn_sim(config_path, port, log_file, extra_args)
        try:
            wait_connectable(probe, port, timeout_s, proc)
        except BaseException as exc:
            stop_process_group(proc)
            raise RuntimeError(f"{exc}\n--- IOC log ---\n{log_path.read_text()}") from exc
        try:
            yield RunningSim(port, config_path, full.beamline, full, proc, log_path)
        finally:
            stop_process_group(proc)
            log_path.unlink(missing_ok=True)


# One IOC per pytest process, however many modules request ``sim_beamline``: a test module
# that imports the fixture function gets its own copy of it from pytest, and a second IOC on
# CA_PORT would split the clients. The copies share this state.
_SESSION: dict = {"users": 0, "sim": None, "stack": None}


@pytest.fixture(scope="session")
def sim_beamline() -> Iterator[RunningSim]:
    """The simulated beamline on CA_PORT with configs/beamline.yaml, for the whole session."""
    if _SESSION["users"] == 0:
        stack = contextlib.ExitStack()
        _SESSION["sim"] = stack.enter_context(
            running_sim(DEFAULT_BEAMLINE, CA_PORT))
        _SESSION["stack"] = stack
    _SESSION["users"] += 1
    try:
        yield _SESSION["sim"]
    finally:
        _SESSION["users"] -= 1
        if _SESSION["users"] == 0:
            _SESSION["stack"].close()
