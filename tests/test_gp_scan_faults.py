"""gp_scan against a misbehaving agent and failing devices (in-process, no hardware).

- a malformed proposal fails the run with an error naming the agent, the proposal and the
  offending field, value or bound (not a bare KeyError / IndexError, nor a move outside the
  plan's bounds);
- an agent that stops the run early has its stop reason logged and put in the stop document;
- a device failure that lands while the clean-up runs does not skip the release of the
  unmeasured proposals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading

import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from ophyd.sim import SynAxis, SynGauss
from ophyd.status import Status

from agent.messages import Proposal
from plans.errors import PlanError
from plans.gp_scan import gp_scan

ADDRESS = "fake://misbehaving"


def proposal(pid: int, points, phase: str = "gp", values=None, stop_reason=None) -> Proposal:
    """A Proposal built without validation, as a buggy agent could hand one over."""
    return Proposal.model_construct(
        schema_version=1, proposal_id=pid, points=points, acquisition_function="test",
        acquisition_values=[0.0] * len(points) if values is None else values, phase=phase,
        hyperparameters=[], n_measurements=pid - 1, decision_time_s=0.0,
        stop_reason=stop_reason)


class ScriptedAgent:
    """Answers asks from ``script(k)`` (k = 1, 2, ...) after ``delay_s``; records releases."""

    address = ADDRESS

    def __init__(self, script, coordinates=("x",), delay_s: float = 0.0):
        self.script, self.delay_s, self.asks = script, delay_s, 0
        self.coordinates = coordinates
        self.released: list[dict] = []

    async def config(self) -> dict:
        return {"coordinates": [{"name": c, "low": -1.0, "high": 1.0}
                                for c in self.coordinates],
                "stop": {"max_points": 10}}

    async def ask(self, n: int = 1, current_position=None) -> Proposal:
        self.asks += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.script(self.asks)

    async def release(self, points):
        self.released += points
        return len(points)


def good(k: int) -> Proposal:
    return proposal(k, [{"x": round(0.1 * k, 3), "y": round(-0.1 * k, 3)}])


class FailingAxis(SynAxis):
    """A simulated axis whose moves fail ``fail_after_s`` after they start (e.g. its IOC died)."""

    def __init__(self, *args, fail_after_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_after_s = fail_after_s

    def set(self, value):
        status = Status(obj=self)
        timer = threading.Timer(self.fail_after_s, lambda: status.set_exception(
            RuntimeError(f"{self.name}: virtual circuit disconnect")))
        timer.daemon = True
        timer.start()
        return status


@pytest.fixture
def x_and_det():
    motor = SynAxis(name="m")
    return motor, SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)


def chain(exc: BaseException | None) -> str:
    text = []
    while exc is not None:
        text.append(repr(exc))
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(text)


def run_failing(RE, agent, motor, det, **kwargs) -> tuple[BaseException, list]:
    docs: list = []
    with pytest.raises(Exception) as info:
        RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=3, **kwargs),
           lambda n, d: docs.append((n, d)))
    return info.value, docs


@pytest.mark.parametrize("bad, expected", [
    (proposal(7, [{"z": 0.1}]), r"proposal 7 .*lacks coordinate 'x'"),
    (proposal(7, []), r"proposal 7 .*no points.*phase is 'gp'"),
    (proposal(7, [{"x": math.nan}]), r"proposal 7 .*x=nan.*not finite"),
    (proposal(7, [{"x": "left"}]), r"proposal 7 .*x='left'.*not a number"),
    (proposal(7, [{"x": 5.0}]), r"proposal 7 .*x=5.0.*outside the plan's bounds \[-1.0, 1.0\]"),
    (proposal(7, [{"x": 0.5}], values=[]), r"proposal 7 .*acquisition_values=\[\]"),
])
def test_malformed_proposal_names_agent_proposal_and_field(RE, x_and_det, bad, expected):
    motor, det = x_and_det
    agent = ScriptedAgent(lambda k: bad)
    exc, docs = run_failing(RE, agent, motor, det)
    assert isinstance(exc, PlanError), repr(exc)
    assert ADDRESS in str(exc)
    assert pytest.approx(0) == motor.readback.get()  # nothing moved
    assert re.search(expected, str(exc)), str(exc)
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "fail" and ADDRESS in stop["reason"]


def test_malformed_second_proposal_after_a_good_one(RE, x_and_det):
    motor, det = x_and_det
    agent = ScriptedAgent(lambda k: proposal(k, [{"x": 0.2}]) if k == 1
                          else proposal(k, [{"y": 0.3}]))
    exc, docs = run_failing(RE, agent, motor, det)
    assert isinstance(exc, PlanError) and "proposal 2" in str(exc) and "'x'" in str(exc)
    primary = [d for n, d in docs if n == "event" and "m" in d["data"]]
    assert [e["data"]["m"] for e in primary] == [0.2]  # the good point was measured


def test_reply_that_is_not_a_valid_proposal_names_the_agent(RE, x_and_det):
    """What ``AgentClient.ask`` raises for a reply that fails Proposal validation."""
    motor, det = x_and_det

    def invalid(k):
        return Proposal.model_validate({
            "proposal_id": k, "points": [{"x": None}], "acquisition_function": "test",
            "acquisition_values": [0.0], "phase": "gp", "n_measurements": 0,
            "decision_time_s": 0.0})

    exc, _ = run_failing(RE, ScriptedAgent(invalid), motor, det)
    assert isinstance(exc, PlanError), repr(exc)
    assert ADDRESS in str(exc) and "points.0.x" in str(exc), str(exc)


def test_agent_stop_reason_is_logged_and_in_the_stop_document(RE, x_and_det, caplog):
    motor, det = x_and_det
    reason = "target_uncertainty 0.05 reached (max posterior std 0.049)"
    agent = ScriptedAgent(lambda k: proposal(k, [{"x": 0.1 * k}]) if k <= 2
                          else proposal(k, [], phase="done", stop_reason=reason))
    docs: list = []
    with caplog.at_level(logging.INFO, logger="plans.gp_scan"):
        RE(gp_scan([det], motor, (-1, 1), agent=agent), lambda n, d: docs.append((n, d)))
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success"
    assert reason in stop["reason"] and ADDRESS in stop["reason"], stop["reason"]
    assert "2 points" in stop["reason"], stop["reason"]
    logged = [r for r in caplog.records if r.name == "plans.gp_scan" and reason in r.message]
    assert logged and logged[0].levelno == logging.INFO


def test_budget_end_is_the_stop_reason(RE, x_and_det):
    motor, det = x_and_det
    agent = ScriptedAgent(lambda k: proposal(k, [{"x": 0.1 * k}]))
    docs: list = []
    RE(gp_scan([det], motor, (-1, 1), agent=agent, max_points=2),
       lambda n, d: docs.append((n, d)))
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success" and "max_points=2" in stop["reason"]


def test_second_motor_failing_during_cleanup_does_not_skip_the_release(RE):
    """The first motor fails; the second fails while the clean-up waits for the prefetched
    proposal. Both the current point and the prefetched one must reach the agent."""
    x = FailingAxis(name="x", fail_after_s=0.05)
    y = FailingAxis(name="y", fail_after_s=0.25)
    det = SynGauss("det", x, "x", center=0, Imax=1, sigma=1)
    agent = ScriptedAgent(good, coordinates=("x", "y"), delay_s=0.5)
    with pytest.raises(FailedStatus) as info:
        RE(gp_scan([det], x, (-1, 1), y, (-1, 1), agent=agent, max_points=3))
    assert "x: virtual circuit disconnect" in chain(info.value)  # the first failure
    call_in_bluesky_event_loop(asyncio.sleep(0.05))
    assert agent.asks == 2
    assert agent.released == [{"x": 0.1, "y": -0.1}, {"x": 0.2, "y": -0.2}]


def test_second_motor_failing_during_the_release_call(RE):
    """The second failure lands while the release request itself is in flight."""
    x = FailingAxis(name="x", fail_after_s=0.05)
    y = FailingAxis(name="y", fail_after_s=0.2)
    det = SynGauss("det", x, "x", center=0, Imax=1, sigma=1)
    agent = ScriptedAgent(good, coordinates=("x", "y"), delay_s=0.05)
    slow_release = agent.release

    async def release(points):
        await asyncio.sleep(0.4)
        return await slow_release(points)

    agent.release = release
    with pytest.raises(FailedStatus) as info:
        RE(gp_scan([det], x, (-1, 1), y, (-1, 1), agent=agent, max_points=3))
    assert agent.released == [{"x": 0.1, "y": -0.1}, {"x": 0.2, "y": -0.2}]
    assert "x: virtual circuit disconnect" in chain(info.value)
