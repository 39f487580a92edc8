"""gp_scan while it waits for the agent: hard pause, suspender, timeout, abort.

Narrow tests with ophyd's simulated axis and a slow in-process fake agent, so the interrupt
lands inside the wait for a proposal every time (the system tests cover the real stack).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.suspenders import SuspendBoolHigh
from bluesky.utils import RunEngineInterrupted
from ophyd import Signal
from ophyd.sim import SynAxis, SynGauss

from agent.errors import AgentTimeoutError
from agent.messages import Proposal
from plans.gp_scan import gp_scan


class SlowAgent:
    """Proposes x = 0.1, 0.2, ... after ``delay_s`` per ask; counts asks in flight."""

    address = "fake://slow"

    def __init__(self, delay_s: float):
        self.delay_s, self.asks, self.in_flight = delay_s, 0, 0
        self.released: list[dict] = []

    async def release(self, points):
        self.released += points
        return len(points)

    async def config(self) -> dict:
        return {"coordinates": [{"name": "x", "low": -1.0, "high": 1.0}],
                "stop": {"max_points": 10}}

    async def ask(self, n: int = 1, current_position=None) -> Proposal:
        self.asks += 1
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return Proposal(proposal_id=self.asks, points=[{"x": round(0.1 * self.asks, 3)}],
                        acquisition_function="test", acquisition_values=[0.0], phase="gp",
                        n_measurements=self.asks - 1, decision_time_s=self.delay_s)


@pytest.fixture
def motor_and_det():
    motor = SynAxis(name="m")
    return motor, SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)


def after(delay_s: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), action()), daemon=True)
    thread.start()
    return thread


def measured_x(docs) -> list[float]:
    primary = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "primary"}
    return [d["data"]["m"] for n, d in docs if n == "event" and d["descriptor"] in primary]


def test_hard_pause_while_waiting_for_a_proposal_resumes(RE, motor_and_det):
    motor, det = motor_and_det
    agent, docs = SlowAgent(0.6), []
    after(0.3, lambda: RE.request_pause(defer=False))  # inside the first ask
    with pytest.raises(RunEngineInterrupted):
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3),
           lambda n, d: docs.append((n, d)))
    assert RE.state == "paused"
    result = RE.resume()
    assert result.exit_status == "success"
    assert measured_x(docs) == [0.1, 0.2, 0.3]  # none lost, none repeated
    assert agent.asks == 3  # the interrupted ask was not asked again
    assert agent.released == []  # the run completed: nothing to hand back


def test_suspender_trip_while_waiting_for_a_proposal(RE, motor_and_det):
    motor, det = motor_and_det
    beam_lost = Signal(name="beam_lost", value=0)
    RE.install_suspender(SuspendBoolHigh(beam_lost, sleep=0.1))
    agent, docs = SlowAgent(0.6), []
    after(0.3, lambda: beam_lost.put(1))
    after(0.6, lambda: beam_lost.put(0))
    RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3),
       lambda n, d: docs.append((n, d)))
    assert measured_x(docs) == [0.1, 0.2, 0.3]
    assert agent.asks == 3
    assert agent.released == []


def test_agent_timeout_names_the_agent_and_cancels_the_ask(RE, motor_and_det, caplog):
    motor, det = motor_and_det
    agent = SlowAgent(5.0)
    t0 = time.monotonic()
    with pytest.raises(AgentTimeoutError, match=r"fake://slow within ask_timeout_s=0.3 s"):
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3, ask_timeout_s=0.3))
    assert time.monotonic() - t0 < 1.5  # the cancelled ask is not waited for again
    call_in_bluesky_event_loop(asyncio.sleep(0.05))  # let the cancellation run
    assert agent.in_flight == 0
    assert agent.released == [] and "not released" not in caplog.text


def test_halt_while_waiting_for_a_proposal_cancels_the_ask(RE, motor_and_det):
    motor, det = motor_and_det
    agent = SlowAgent(2.0)
    after(0.3, lambda: RE.request_pause(defer=False))  # inside the first ask
    with pytest.raises(RunEngineInterrupted):
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3))
    RE.halt()  # no cleanup plan runs on halt; the ask in flight must not outlive the run
    call_in_bluesky_event_loop(asyncio.sleep(0.05))
    assert agent.in_flight == 0


def test_abort_hands_unmeasured_proposals_back(RE, motor_and_det):
    motor, det = motor_and_det
    agent = SlowAgent(0.3)
    motor.delay = 0.5  # the second ask is in flight while the first point's move runs
    after(0.5, lambda: RE.request_pause(defer=True))  # at the checkpoint after point 1
    with pytest.raises(RunEngineInterrupted):
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3))
    RE.abort()
    assert agent.asks == 2 and agent.in_flight == 0
    assert agent.released == [{"x": 0.2}]  # the prefetched proposal, never measured


def test_abort_mid_move_hands_back_the_current_point(RE, motor_and_det):
    motor, det = motor_and_det
    agent = SlowAgent(0.1)
    motor.delay = 1.0
    after(0.5, lambda: RE.request_pause(defer=False))  # during the first point's move
    with pytest.raises(RunEngineInterrupted):
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3))
    RE.abort()
    assert agent.released == [{"x": 0.1}, {"x": 0.2}]  # the point in progress, the prefetch
