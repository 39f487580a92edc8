"""Start the simulated beamline and the agent service as subprocesses, and always stop them.

Each child gets its own process group, so a stop takes its children with it; a context
manager guarantees the stop, on errors and Ctrl-C too, and on Linux a child also dies with
its parent (a killed demo or test run leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_ORPHANED = 125  # a child whose parent died before it started


def free_port_pair() -> int:
    """A port p on 127.0.0.1 with p (TCP+UDP) and p+1 (UDP, CA repeater) free now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and all(_udp_free(p) for p in (port, port + 1)):
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


CA_MAX_ARRAY_BYTES = 16 * 1024 * 1024  # 4096 x 2048 int16 images


def ca_client_environment(port: int) -> dict[str, str]:
    """Channel Access client settings for one IOC on 127.0.0.1:port (see FIELD_NOTES)."""
    return {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        # libca's default of 16 kB cuts waveforms: a camera image is size_x * size_y * 2 B
        "EPICS_CA_MAX_ARRAY_BYTES": str(CA_MAX_ARRAY_BYTES),
    }


def stop_process_group(process: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL if it has not exited in time."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout_s)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when its parent dies, even by SIGKILL
    (Linux ``prctl(PR_SET_PDEATHSIG)``); None elsewhere. Resolved here, not in the child.

    A parent that dies between the fork and the ``prctl`` sends no signal: the child then
    sees another parent (``getppid`` changed) and exits at once instead of running orphaned.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(EXIT_ORPHANED)

    return preexec


@contextlib.contextmanager
def child(args: list[str], log_path: Path, env: dict[str, str] | None = None
          ) -> Iterator[subprocess.Popen]:
    """Run ``python args...`` in its own process group, stdout and stderr to ``log_path``.

    The child is stopped on exit from the context, and dies with this process on Linux.
    """
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
    try:
        yield process
    finally:
        stop_process_group(process)


def read_line(process: subprocess.Popen, log_path: Path, prefix: str, timeout_s: float,
              what: str) -> str:
    """The first line of ``log_path`` starting with ``prefix``, as the child writes it.

    Raises RuntimeError if the child exits first or on timeout, naming ``what``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line.strip()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not print {prefix!r} within {timeout_s} s "
                       f"(exit code {process.poll()}; log {log_path})")


def wait_for_tcp(process: subprocess.Popen, port: int, timeout_s: float, what: str) -> None:
    """Poll until 127.0.0.1:port accepts TCP. Raises RuntimeError naming ``what`` if the
    process exits first or on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.2)
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not accepting connections on 127.0.0.1:{port} after "
                       f"{timeout_s} s (exit code {process.poll()})")


@contextlib.contextmanager
def simulated_beamline(config_path: Path, port: int, log_dir: Path) -> Iterator[subprocess.Popen]:
    """``python -m sim`` on 127.0.0.1:port, connectable on return."""
    with child(["-m", "sim", "--config", str(config_path), "--port", str(port)],
               log_dir / "sim.log") as process:
        wait_for_tcp(process, port, 30.0, "simulated beamline")
        yield process


@contextlib.contextmanager
def agent_service(config_path: Path, checkpoint_dir: Path, log_dir: Path
                  ) -> Iterator[dict[str, str]]:
    """``python -m agent`` on free loopback ports. Yields its addresses by role."""
    args = ["-m", "agent", "--config", str(config_path), "--checkpoint-dir", str(checkpoint_dir),
            "--request-port", "0", "--measurement-port", "0", "--status-port", "0"]
    with child(args, log_dir / "agent.log") as process:
        ready = read_line(process, log_dir / "agent.log", "READY", 60.0, "agent service")
        yield dict(item.split("=", 1) for item in ready.split()[1:])
