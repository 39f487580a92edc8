"""Exactly-once proposals across agent restarts: the real service as a subprocess, SIGKILLed
and restarted in the same directory, with the real client resending across the gap."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from agent.client import AgentClient
from agent.messages import Measurement
from tests.service_helpers import Requester, kill_group, start_service, write_agent_config

pytestmark = pytest.mark.system

TOLERANCE_MM = 0.02 * 20  # the engine's default pending_tolerance (0.02) x the 20 mm span


@pytest.fixture
def agent(tmp_path):
    """(start, request address, checkpoint dir): ``start()`` runs the service in tmp_path and
    waits (bounded) until it answers; every process started is SIGKILLed at the end."""
    config, ports = write_agent_config(tmp_path)
    address = f"tcp://127.0.0.1:{ports['request_port']}"
    procs = []

    def start(wait: bool = True):
        proc = start_service(config, tmp_path / "service.log")
        procs.append(proc)
        if wait:
            requester = Requester(address)
            try:
                requester.wait_ready(proc)
            finally:
                requester.close()
        return proc

    yield start, address, tmp_path / "checkpoint"
    for proc in procs:
        kill_group(proc)


def apart(a: list[dict], b: list[dict]) -> bool:
    """No point of ``a`` within the pending tolerance of a point of ``b``."""
    pa = np.array([[p["x"], p["y"]] for p in a])
    pb = np.array([[p["x"], p["y"]] for p in b])
    return bool(np.all(np.max(np.abs(pa[:, None] - pb[None]), axis=2) > TOLERANCE_MM))


def measurement(point: dict, seq: int) -> Measurement:
    return Measurement(run_uid="restart", seq=seq, positions=point, values={"det_norm": 1.0},
                       variances={"det_norm": 1e-4})


async def test_ids_continue_and_pending_points_survive_a_sigkill(agent):
    start, address, _ = agent
    proc = start()
    client = AgentClient(address, timeout_s=30, resend_s=0.5)
    try:
        first = await client.ask(n=3)
        await client.tell(measurement(first.points[0], 0))  # acknowledged: in the log
        assert (await client.status())["n_pending"] == 2
        kill_group(proc)  # SIGKILL: no clean-up

        start()
        status = await client.status()  # the same session, still open after the restart
        assert status["n_pending"] == 2 and status["n_measurements"] == 1
        assert status["service"]["sessions"]["last_proposal_id"] == first.proposal_id
        again = await client.ask(n=3)
        assert again.proposal_id > first.proposal_id
        assert apart(again.points, first.points), (again.points, first.points)
        assert await client.release(first.points[1:]) == 2  # still this session's to release
    finally:
        client.close()


async def test_an_ask_sent_while_the_agent_is_down_is_answered_once_by_its_successor(agent):
    start, address, _ = agent
    proc = start()
    client = AgentClient(address, timeout_s=30, resend_s=0.3)
    try:
        before = await client.ask(n=2)
        kill_group(proc)
        asking = asyncio.ensure_future(client.ask(n=2))  # resent until the successor answers
        await asyncio.sleep(0.5)  # the ask is in flight, and resent, while nobody listens
        assert not asking.done()
        start(wait=False)
        after = await asyncio.wait_for(asking, 30)
        status = await client.status()
    finally:
        client.close()
    assert after.proposal_id > before.proposal_id
    assert apart(after.points, before.points)
    assert status["n_pending"] == 4  # 2 restored + 2 new: each resend answered by one proposal
    assert status["service"]["sessions"]["pending"] == {client.session[:8]: 4}


def test_an_ask_resent_after_a_restart_gets_the_proposal_already_given(agent):
    """A reply lost with the service: the same request id gets the same proposal, once."""
    start, address, ck = agent
    proc = start()
    requester = Requester(address)
    session = "s" * 32
    try:
        assert requester.request({"type": "open", "session": session})["type"] == "ok"
        ask = json.dumps({"type": "ask", "n": 2, "session": session, "request_id": 77}).encode()
        given = requester.raw(ask)
        kill_group(proc)
        start()
        resent = requester.raw(ask, timeout_s=10)
        fresh = requester.request({"type": "ask", "n": 1, "session": session})
        status = requester.status()
    finally:
        requester.close()
    assert resent == given
    assert fresh["proposal"]["proposal_id"] == given["proposal"]["proposal_id"] + 1
    assert status["n_pending"] == 3 and status["service"]["n_resent_asks"] == 1
    saved = json.loads((ck / "sessions.json").read_text())
    assert saved["last_proposal_id"] == fresh["proposal"]["proposal_id"]
