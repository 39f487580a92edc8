"""Measurements delivered exactly once, across agent restarts: acknowledged ``tell``s.

A PUSH socket (``agent.reducers.MeasurementPusher``) is fire-and-forget: a measurement
written into the TCP connection of a service that is then killed is gone, and the
restarted service never learns that the point was measured (it stays pending there while
the plan has it). ``MeasurementSender`` sends each measurement to the request socket as a
``tell`` and resends it until the service acknowledges it (at once when a later tell is
answered first, else after ``resend_s`` of silence, one probe at a time); the service
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
from collections import OrderedDict
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
    # Resending (the service answers one connection's tells in the order it receives them):
    # - a reply to a tell means every tell sent before it and still unanswered was lost (in
    #   a killed service, or its reply dropped): those are resent at once;
    # - silence for ``resend_s`` with tells unanswered (the service is down, restarting or
    #   busy): only the oldest is resent, as a probe; its reply then resends the rest.
    # So a slow service (a GP update per tell at large N) is never flooded with copies, and
    # a restarted one gets everything as soon as it answers.
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)  # bounded by the window, never blocks
        sock.setsockopt(zmq.RCVHWM, 0)
        if self._curve is not None:
            curve.secure_client(sock, *self._curve)
        sock.connect(self.address)
        state = _Flight(sock, json.dumps({"type": "open", "session": self.session}).encode())
        sock.send_multipart([b"", state.open_payload])
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._closing.is_set():
                self._take(state)
                ready = dict(poller.poll(_POLL_MS))
                if self._wake_r in ready:
                    self._drain_wake()
                if sock in ready:
                    self._replies(state)
                self._probe(state)
        finally:
            sock.close(linger=0)
            ctx.term()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take(self, state: _Flight) -> None:
        while len(state.unacked) < _WINDOW:
            try:
                m = self._inbox.get_nowait()
            except queue.Empty:
                return
            rid = next(state.ids)
            payload = json.dumps({"type": "tell", "measurement": m.model_dump(mode="json"),
                                  "session": self.session, "request_id": rid},
                                 allow_nan=False).encode()
            state.unacked[rid] = _Entry(payload, m)
            state.send(rid)

    def _replies(self, state: _Flight) -> None:
        while True:
            try:
                frames = state.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            state.last_heard = time.monotonic()
            try:
                reply = decode_reply(frames[-1])
            except ValueError:
                continue
            rid = reply.get("request_id")
            entry = state.unacked.get(rid) if isinstance(rid, int) else None
            if entry is None:  # the open's reply, or a second answer to a resent tell
                continue
            if reply.get("code") == "session_not_opened":  # the service lost it: open again
                state.sock.send_multipart([b"", state.open_payload])
                state.send(rid)
                self.n_resent += 1
                continue
            del state.unacked[rid]
            self.n_resent += state.resend_before(entry.order)
            if reply["type"] == "error":
                self.n_refused += 1
                logger.error("measurement %s/%d refused by %s: %s", entry.measurement.run_uid,
                             entry.measurement.seq, self.address, reply.get("error"))
            else:
                self.n_acknowledged += 1
            with self._lock:
                self._unfinished -= 1
                self._lock.notify_all()

    def _probe(self, state: _Flight) -> None:
        if not state.unacked:
            return
        rid, oldest = next(iter(state.unacked.items()))
        now = time.monotonic()
        if now - max(state.last_heard, oldest.sent_at) >= self.resend_s:
            state.send(rid)
            state.last_heard = now
            self.n_resent += 1


class _Entry:
    __slots__ = ("payload", "measurement", "order", "sent_at")

    def __init__(self, payload: bytes, measurement: Measurement):
        self.payload, self.measurement = payload, measurement
        self.order, self.sent_at = 0, 0.0


class _Flight:
    """The delivery thread's state: unacknowledged tells by request id, oldest send first."""

    def __init__(self, sock: zmq.Socket, open_payload: bytes):
        self.sock, self.open_payload = sock, open_payload
        self.ids, self._orders = itertools.count(1), itertools.count(1)
        self.unacked: OrderedDict[int, _Entry] = OrderedDict()
        self.last_heard = time.monotonic()

    def send(self, rid: int) -> None:
        entry = self.unacked[rid]
        entry.order, entry.sent_at = next(self._orders), time.monotonic()
        self.unacked.move_to_end(rid)
        self.sock.send_multipart([b"", entry.payload])

    def resend_before(self, order: int) -> int:
        """Resend the tells last sent before the one of ``order`` (answered): lost."""
        n = 0
        while self.unacked:
            rid, entry = next(iter(self.unacked.items()))
            if entry.order > order:
                break
            self.send(rid)
            n += 1
        return n
