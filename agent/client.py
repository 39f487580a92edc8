"""Async client of the agent service, for plans awaiting proposals inside the RunEngine loop.

Uses a zmq.asyncio DEALER socket, so waiting never blocks the event loop. The client opens a
session of its own (a random 128-bit token, ``agent.sessions``) before its first request and
names it in every request. A request not answered within ``resend_s`` is sent again, with
the same request id, until ``timeout_s``: a request lost with a killed service reaches its
restarted successor, and the service answers a resent ask with the proposal it already gave
(never a second one). A service that lost the session (restarted without a checkpoint
directory) gets it opened again. After a timeout the socket is closed and recreated: a late
reply to the abandoned request can then never be taken for the answer to the next one
(request ids are checked as well).

With ``server_key`` (the service's public key, ``server.key``) and ``client_key`` (this
client's key pair, ``client.key_secret``), both from ``beamagent keys DIR``, the socket is a
CURVE client; a service with CURVE on accepts no other.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from agent import curve
from agent.errors import AgentRequestError, AgentTimeoutError
from agent.messages import Measurement, PosteriorGrid, Proposal, SessionStarted
from agent.protocol import decode_reply

DEFAULT_REQUEST_ADDRESS = "tcp://127.0.0.1:5580"
__all__ = ["AgentClient", "AgentRequestError", "AgentTimeoutError"]


class AgentClient:
    """Request proposals, status and config from an agent service.

    ``address``: the service's request (ROUTER) address. ``timeout_s``: per request, covering
    send, resends and reply. ``resend_s``: resend period while no reply has come.
    ``server_key``/``client_key``: CURVE key files (see the module doc). ``session``: a
    session token to use (default: a fresh random one). Every method raises
    AgentTimeoutError naming the address and the timeout, and AgentRequestError with the
    service's reason for a refused request (a quota, a bad position, ...).
    """

    def __init__(self, address: str = DEFAULT_REQUEST_ADDRESS, timeout_s: float = 5.0, *,
                 resend_s: float = 1.0, server_key: str | Path | None = None,
                 client_key: str | Path | None = None, session: str | None = None):
        if (server_key is None) != (client_key is None):
            raise ValueError(f"server_key={server_key!r}, client_key={client_key!r}: CURVE "
                             "needs both (server.key and client.key_secret)")
        self.address = address
        self.timeout_s = timeout_s
        self.resend_s = resend_s
        self.session = session or secrets.token_hex(16)
        self._curve = None if server_key is None else (curve.load_public(server_key),
                                                        curve.load_pair(client_key))
        self._opened = False
        self._ctx = zmq.asyncio.Context()
        self._ids = itertools.count(1)
        self._socket: zmq.asyncio.Socket | None = None
        self._lock: asyncio.Lock | None = None

    async def ask(self, n: int = 1, current_position: dict[str, float] | None = None) -> Proposal:
        """The next ``n`` points (a Proposal; phase "done" with no points once a stop is met)."""
        reply = await self._request({"type": "ask", "n": n, "current_position": current_position})
        return Proposal.model_validate(reply["proposal"])

    async def tell(self, measurement: Measurement) -> None:
        """Hand one measurement to the engine directly (acknowledged, unlike the PUSH path)."""
        await self._request({"type": "tell", "measurement": measurement.model_dump(mode="json")})

    async def release(self, points: list[dict[str, float]]) -> int:
        """Proposed points that will never be measured stop being pending; returns how many
        the agent still held."""
        return (await self._request({"type": "release", "points": points}))["released"]

    async def status(self) -> dict[str, Any]:
        """The service status: engine status plus n_rejected and service counters."""
        return (await self._request({"type": "status"}))["status"]

    async def config(self) -> dict[str, Any]:
        """The engine config as a JSON-able dict (for a plan's start document)."""
        return (await self._request({"type": "config"}))["config"]

    async def start_session(self, uid: str, problem: dict[str, Any],
                            continue_session: str | None = None) -> SessionStarted:
        """Start the run session ``uid`` (the run's uid) for ``problem`` (``coordinates``,
        ``value``: ``agent.problem.Problem``), or continue the earlier session
        ``continue_session`` with run ``uid``. This client's asks and releases then go to
        that session. Raises AgentRequestError with the reason (e.g. a problem unlike the
        continued session's, naming the field and both values)."""
        reply = await self._request({"type": "start_session", "uid": uid, "problem": problem,
                                     "continue_session": continue_session})
        return SessionStarted.model_validate(reply["started"])

    async def posterior(self, shape: tuple[int, ...] = (50, 50), uid: str | None = None,
                        coordinates: list[str] | None = None,
                        at: dict[str, float] | None = None) -> PosteriorGrid:
        """Posterior mean and std of run session ``uid`` (default: this client's) on a grid
        of ``shape`` (one or two axes, at most 100 points each). Raises AgentRequestError
        before the session has a model (``code`` "no_model")."""
        reply = await self._request({"type": "posterior", "uid": uid, "shape": list(shape),
                                     "coordinates": coordinates, "at": at})
        return PosteriorGrid.model_validate(reply["grid"])

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one request in flight per client
            try:
                reply = await asyncio.wait_for(self._in_session(body), self.timeout_s)
            except TimeoutError:
                self._reset()
                raise AgentTimeoutError(
                    f"agent service at {self.address} did not answer a {body['type']!r} "
                    f"request within {self.timeout_s} s"
                ) from None
        if reply["type"] == "error":
            error = AgentRequestError(f"agent service at {self.address}: {reply.get('error')}")
            error.code = reply.get("code")  # e.g. "no_model", "problem_mismatch", "quota"
            raise error
        return reply

    async def _in_session(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` sent in this client's session, opened first if need be (and again once if
        the service no longer knows it)."""
        for _ in range(2):
            if not self._opened:
                opened = await self._exchange({"type": "open", "session": self.session})
                if opened["type"] == "error":
                    return opened
                self._opened = True
            reply = await self._exchange({**body, "session": self.session})
            if reply.get("code") != "session_not_opened":
                return reply
            self._opened = False
        return reply

    async def _exchange(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send ``body`` with a new request id, resending it every ``resend_s`` until its
        reply comes (the caller bounds the wait)."""
        rid = next(self._ids)
        payload = json.dumps({**body, "request_id": rid}, allow_nan=False).encode()
        sock = self._connected()
        while True:
            await sock.send_multipart([b"", payload])  # empty delimiter, as a REQ sends
            while await sock.poll(max(int(self.resend_s * 1000), 1), zmq.POLLIN):
                reply = decode_reply((await sock.recv_multipart())[-1])
                if reply.get("request_id") == rid:
                    return reply

    def _connected(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            self._socket = self._ctx.socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                curve.secure_client(self._socket, *self._curve)
            self._socket.connect(self.address)
        return self._socket

    def _reset(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def close(self) -> None:
        """Close the socket and context. Idempotent."""
        self._reset()
        self._ctx.term()
