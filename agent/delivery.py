"""Measurements delivered exactly once, across agent restarts: acknowledged ``tell``s.

A PUSH socket (``agent.reducers.MeasurementPusher``) is fire-and-forget: a measurement
written into the TCP connection of a service that is then killed is gone, and the
restarted service never learns that the point was measured (it stays pending there while
the plan has it). ``MeasurementSender`` sends each measurement to the request socket as a
``tell`` and resends it every ``resend_s`` until the service acknowledges it; the service
logs it before acknowledging and ignores a second copy of the same (run_uid, seq). So after
any kill the plan and the service agree on what was measured. Use it as a reducer's sink::

    sender = MeasurementSender("tcp://127.0.0.1:5580")
    reducer = ScalarReducer(positions={"x": "sample_x"}, sink=sender)
    ...
    sender.close()  # waits (bounded) for the last acknowledgements

Calling the sender never blocks the RunEngine: measurements queue to a background thread
(at most ``max_queued``; beyond, they are dropped, logged and counted in ``n_dropped``), which
is woken at once through a pipe (no polling delay). ``agent.reducers`` builds one for a
reducer given ``request_address=``: that is the default delivery. A
measurement the service refuses (bad data) is logged and counted in ``n_refused``, never
resent: it would be refused again.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import secrets
import threading
import time
from pathlib import Path

import zmq

from agent import curve
from agent.messages import Measurement
from agent.protocol import decode_reply

logger = logging.getLogger(__name__)

_POLL_MS = 20
_WINDOW = 1000  # measurements in flight at once


class MeasurementSender:
    """Acknowledged, resent delivery of Measurements to the service's request address.

    ``server_key``/``client_key``: CURVE key files, as for ``agent.client.AgentClient``.
    Counters: ``n_sent`` (accepted for delivery), ``n_acknowledged``, ``n_refused``,
    ``n_dropped``, ``n_resent``.
    """

    def __init__(self, address: str, *, resend_s: float = 1.0, max_queued: int = 100_000,
                 server_key: str | Path | None = None, client_key: str | Path | None = None):
        if (server_key is None) != (client_key is None):
            raise ValueError(f"server_key={server_key!r}, client_key={client_key!r}: CURVE "
                             "needs both (server.key and client.key_secret)")
        self.address, self.resend_s = address, resend_s
        self.session = secrets.token_hex(16)
        self._curve = None if server_key is None else (curve.load_public(server_key),
                                                        curve.load_pair(client_key))
        self._inbox: queue.Queue[Measurement] = queue.Queue(max_queued)
        self._lock = threading.Condition()
        self._unfinished = 0
        self._wake_r, self._wake_w = os.pipe()  # the caller wakes the thread's poll
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.n_sent = self.n_acknowledged = self.n_refused = self.n_dropped = self.n_resent = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="measurement-sender",
                                        daemon=True)
        self._thread.start()

    def __call__(self, measurement: Measurement) -> None:
        with self._lock:  # counted first: the thread may acknowledge it at once
            self._unfinished += 1
        try:
            self._inbox.put_nowait(measurement)
        except queue.Full:
            with self._lock:
                self._unfinished -= 1
                self._lock.notify_all()
            self.n_dropped += 1
            logger.error("measurement %s/%d dropped: %d queued for %s", measurement.run_uid,
                         measurement.seq, self._inbox.qsize(), self.address)
            return
        self.n_sent += 1
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # pipe full (the thread wakes anyway) or closed
            pass

    @property
    def unacknowledged(self) -> int:
        """Measurements given to the sender and not yet acknowledged or refused."""
        return self._unfinished

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every measurement is acknowledged or refused; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush (bounded by ``timeout_s``), then stop. What is still unacknowledged is
        logged. Idempotent."""
        if self._closing.is_set():
            return
        if not self.flush(timeout_s):
            logger.error("%d measurements not acknowledged by %s within %s s",
                         self._unfinished, self.address, timeout_s)
        self._closing.set()
        self._wake()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- the delivery thread ----------------------------------------------------------------
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve is not None:
            curve.secure_client(sock, *self._curve)
        sock.connect(self.address)
        ids = itertools.count(1)
        unacked: dict[int, list] = {}  # request id -> [payload, last sent, measurement]
        open_payload = json.dumps({"type": "open", "session": self.session}).encode()
        sock.send_multipart([b"", open_payload])
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._closing.is_set():
                self._take(sock, ids, unacked)
                ready = dict(poller.poll(_POLL_MS))
                if self._wake_r in ready:
                    self._drain_wake()
                if sock in ready:
                    self._replies(sock, unacked, open_payload)
                self._resend(sock, unacked)
        finally:
            sock.close(linger=0)
            ctx.term()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take(self, sock: zmq.Socket, ids, unacked: dict) -> None:
        while len(unacked) < _WINDOW:
            try:
                m = self._inbox.get_nowait()
            except queue.Empty:
                return
            rid = next(ids)
            payload = json.dumps({"type": "tell", "measurement": m.model_dump(mode="json"),
                                  "session": self.session, "request_id": rid},
                                 allow_nan=False).encode()
            unacked[rid] = [payload, time.monotonic(), m]
            sock.send_multipart([b"", payload])

    def _replies(self, sock: zmq.Socket, unacked: dict, open_payload: bytes) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_reply(frames[-1])
            except ValueError:
                continue
            entry = unacked.get(reply.get("request_id"))
            if entry is None:  # the open's reply, or a second answer to a resent tell
                continue
            if reply.get("code") == "session_not_opened":  # the service lost it: open again
                sock.send_multipart([b"", open_payload])
                entry[1] = 0.0  # resend at once, after the open
                continue
            del unacked[reply["request_id"]]
            if reply["type"] == "error":
                self.n_refused += 1
                logger.error("measurement %s/%d refused by %s: %s", entry[2].run_uid,
                             entry[2].seq, self.address, reply.get("error"))
            else:
                self.n_acknowledged += 1
            with self._lock:
                self._unfinished -= 1
                self._lock.notify_all()

    def _resend(self, sock: zmq.Socket, unacked: dict) -> None:
        now = time.monotonic()
        for entry in unacked.values():
            if now - entry[1] >= self.resend_s:
                sock.send_multipart([b"", entry[0]])
                entry[1] = now
                self.n_resent += 1
