"""Serve a :class:`~sim.beamline.SimBeamline` with caproto's asyncio server on loopback.

Two fixes over a plain ``caproto.asyncio.server.run``:

- ``server_environment`` pins the server to one interface and port and stops beacons to
  255.255.255.255 (caproto reads these variables when the Context starts, so set them first).
- Nagle stall (FIELD_NOTES): asyncio only sets TCP_NODELAY on sockets whose ``proto`` is
  IPPROTO_TCP, but caproto 1.3.0 creates its listening socket with proto 0, so accepted
  circuits keep Nagle on and replies to concurrent requests stall ~40 ms.
  :class:`NodelayContext` overrides ``tcp_handler``, the one hook that sees every new
  circuit, and sets TCP_NODELAY on it before caproto starts reading.
- Monitor lag: while updates stream (RBV at every motion tick), caproto batches them and
  doubles the allowed latency up to 1 s (``CAPROTO_SERVER_MAX_LATENCY_SEC``); DMOV and ring
  current monitors then arrived up to 0.3 s late here. An IOC's monitors should not lag
  moves and suspenders like that, so the cap is MONITOR_MAX_LATENCY_S unless the variable
  is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import caproto.server.common as caproto_server_common
from caproto.asyncio.server import Context

from sim.beamline import SimBeamline
from sim.errors import PortInUseError

MONITOR_MAX_LATENCY_S = 0.02  # the longest a batched monitor update may wait, s
SHUTDOWN_DEADLINE_S = 5.0  # s from the first SIGINT/SIGTERM to a forced exit
EXIT_SHUTDOWN_DEADLINE = 3  # exit code of a shutdown that overran its deadline


def server_environment(port: int, interface: str = "127.0.0.1") -> dict[str, str]:
    """Environment a caproto server process needs to serve only on ``interface:port``."""
    return {
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": interface,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": interface,
        # beacons go to the clients' repeater port (tests/epics_env.py uses port + 1)
        "EPICS_CAS_BEACON_PORT": str(port + 1),
    }


class _NoRepeaterFilter(logging.Filter):
    """Drop caproto's per-beacon traceback when no CA repeater listens on loopback.

    Linux wheels of libca ship no caRepeater (FIELD_NOTES), so beacons to the repeater port
    are refused; that is harmless and would otherwise print a traceback every period.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to send beacon")


class NodelayContext(Context):
    """caproto asyncio server Context whose TCP circuits have TCP_NODELAY set."""

    async def tcp_handler(self, client, addr):
        sock = client.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await super().tcp_handler(client, addr)


class Shutdown:
    """SIGINT/SIGTERM handling that is re-entrant-safe and bounded.

    The parent-death signal (plans.processes) can arrive as a burst of SIGTERMs, and
    ``loop.add_signal_handler`` re-cancelled the server on each one, cutting its clean-up,
    and is removed when the loop closes, so late signals of the burst killed the process
    with the default action. Here:

    - the first signal starts the shutdown (cancels the server task, whose ``finally``
      saves the autosave) and starts a deadline timer; further signals are counted and
      otherwise ignored, until the process is gone;
    - the handler is a plain ``signal.signal`` handler, installed before the loop starts
      and never removed; its guard is a non-blocking lock acquire, so a signal nested in
      the handler returns at once and can never deadlock;
    - if the process is still alive ``deadline_s`` after the first signal (a task that does
      not finish, a thread that is not joined), ``last_words`` (best effort) runs and the
      process ends with ``os._exit(EXIT_SHUTDOWN_DEADLINE)``;
    - it writes with ``os.write``: ``print`` from a handler that interrupted a ``print``
      raises "reentrant call" on the buffered stream.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, deadline_s: float = SHUTDOWN_DEADLINE_S,
                 last_words: Callable[[], object] | None = None) -> None:
        self.deadline_s = deadline_s
        self.last_words = last_words
        self.ignored = 0  # signals after the first
        self._first = threading.Lock()
        self._cancel: Callable[[], None] | None = None
        self._requested = False  # a signal came before arm()

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now until the process exits (main thread only)."""
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)

    def arm(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        """The server is running as ``task`` in ``loop``: a signal now cancels it."""
        self._cancel = lambda: loop.call_soon_threadsafe(task.cancel)
        if self._requested:
            self._cancel()

    def quiet(self) -> None:
        """Block SIGINT/SIGTERM in this thread for the rest of the process.

        Interpreter finalization restores the default handlers; without this, the tail of
        a burst would kill the process (exit -15) after its clean shutdown.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    @property
    def started(self) -> bool:
        return self._first.locked()

    def _on_signal(self, signum, frame) -> None:
        if not self._first.acquire(blocking=False):
            self.ignored += 1
            return
        threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()
        _say(f"beamagent sim: {signal.Signals(signum).name}: shutting down")
        if self._cancel is None:
            self._requested = True
        else:
            self._cancel()

    def _deadline(self) -> None:
        self.quiet()  # signals of the burst go to the main thread (or stay pending at exit)
        time.sleep(self.deadline_s)
        try:
            _say(f"beamagent sim: shutdown not done {self.deadline_s} s after the signal "
                 f"({self.ignored} more signals ignored); forcing exit", sys.stderr)
            if self.last_words is not None:
                self.last_words()
        finally:
            os._exit(EXIT_SHUTDOWN_DEADLINE)


def _say(text: str, stream=sys.stdout) -> None:
    """One line to ``stream``'s file descriptor, bypassing its (non-reentrant) buffer."""
    with contextlib.suppress(OSError, ValueError):
        os.write(stream.fileno(), (text + "\n").encode())


def check_port_free(port: int, interface: str = "127.0.0.1") -> None:
    """Raise PortInUseError if TCP ``interface:port`` cannot be bound.

    caproto silently falls back to a random TCP port when its port is taken, while its UDP
    search socket (SO_REUSEPORT) still shares the port: two IOCs would then split the
    clients between them (FIELD_NOTES). Refusing to start is the safe answer.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as caproto binds
        try:
            probe.bind((interface, port))
        except OSError as exc:
            raise PortInUseError(
                f"TCP {interface}:{port} is in use ({exc.strerror}); is another IOC serving "
                "there? Choose another --port") from exc


async def serve(beamline: SimBeamline, port: int, interface: str = "127.0.0.1",
                ready=None) -> None:
    """Serve until cancelled. ``ready(ctx)`` is called once the server is starting.

    Raises:
        PortInUseError: the TCP port is taken.
    """
    check_port_free(port, interface)
    os.environ.update(server_environment(port, interface))
    if "CAPROTO_SERVER_MAX_LATENCY_SEC" not in os.environ:
        caproto_server_common.MAX_LATENCY = MONITOR_MAX_LATENCY_S  # read on every batch
    await beamline.initialise()
    logging.getLogger("caproto.ctx").addFilter(_NoRepeaterFilter())
    ctx = NodelayContext(beamline.pvdb, [interface])
    if ready is not None:
        ready(ctx)
    try:
        await ctx.run(startup_hook=beamline.run_background)
    finally:  # a clean shutdown (cancelled by SIGINT/SIGTERM) saves the latest state
        beamline.save_autosave()


def run_until_signal(beamline: SimBeamline, port: int, interface: str = "127.0.0.1",
                     ready=None, deadline_s: float = SHUTDOWN_DEADLINE_S) -> None:
    """Blocking: serve until SIGINT or SIGTERM, then shut down cleanly (:class:`Shutdown`).

    Raises:
        PortInUseError: the TCP port is taken (nothing was served).
    """

    async def main() -> None:
        task = asyncio.create_task(serve(beamline, port, interface, ready))
        shutdown.arm(asyncio.get_running_loop(), task)
        try:
            await task
        except asyncio.CancelledError:
            pass

    shutdown = Shutdown(deadline_s, last_words=beamline.save_autosave)
    shutdown.install()
    try:
        asyncio.run(main())
    finally:
        shutdown.quiet()
