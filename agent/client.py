"""Async client of the agent service, for plans awaiting proposals inside the RunEngine loop.

Uses a zmq.asyncio DEALER socket, so waiting never blocks the event loop. After a timeout the
socket is closed and recreated: a late reply to the abandoned request can then never be taken
for the answer to the next one (request ids are checked as well).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import zmq
import zmq.asyncio

from agent.errors import AgentRequestError, AgentTimeoutError
from agent.messages import Measurement, Proposal
from agent.protocol import decode_reply

DEFAULT_REQUEST_ADDRESS = "tcp://127.0.0.1:5580"
__all__ = ["AgentClient", "AgentRequestError", "AgentTimeoutError"]


class AgentClient:
    """Request proposals, status and config from an agent service.

    ``address``: the service's request (ROUTER) address. ``timeout_s``: per request, covering
    send and reply. Every method raises AgentTimeoutError naming the address and the timeout.
    """

    def __init__(self, address: str = DEFAULT_REQUEST_ADDRESS, timeout_s: float = 5.0):
        self.address = address
        self.timeout_s = timeout_s
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

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one request in flight per client
            rid = next(self._ids)
            payload = json.dumps({**body, "request_id": rid}, allow_nan=False).encode()
            try:
                reply = await asyncio.wait_for(self._exchange(payload, rid), self.timeout_s)
            except TimeoutError:
                self._reset()
                raise AgentTimeoutError(
                    f"agent service at {self.address} did not answer a {body['type']!r} "
                    f"request within {self.timeout_s} s"
                ) from None
        if reply["type"] == "error":
            raise AgentRequestError(f"agent service at {self.address}: {reply.get('error')}")
        return reply

    async def _exchange(self, payload: bytes, rid: int) -> dict[str, Any]:
        sock = self._connected()
        await sock.send_multipart([b"", payload])  # empty delimiter, as a REQ socket sends
        while True:
            reply = decode_reply((await sock.recv_multipart())[-1])
            if reply.get("request_id") == rid:
                return reply

    def _connected(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            self._socket = self._ctx.socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
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
