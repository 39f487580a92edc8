"""A run configures its agent: the run's problem, sent as a run session at the run's start.

Before the run opens, the plan builds its problem from what it moves (``run_problem``): each
motor's bounds, units (EGU) and velocity (VELO, where readable) and the name of the modelled
value. The agent config's own coordinates, if it names any, pair with the motors in order and
must match (``plans.gp_scan.check_agent`` refuses otherwise, before anything moves). Once the
run is open, ``start_agent_session`` sends ``start_session`` with the run's uid: the agent
builds an engine for this run alone, or, with ``continue_session=<uid>``, adds the run to an
earlier session (its measurements included). Never silently: a new run never sees another
session's data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from bluesky import plan_stubs as bps
from bluesky.utils import MsgGenerator

from agent.errors import AgentRequestError
from plans import tasks
from plans.errors import PlanArgumentError
from plans.preflight import Bounds

logger = logging.getLogger(__name__)


def motor_velocity(motor) -> MsgGenerator[float | None]:
    """The motor's velocity (.VELO, EGU/s) if it has a readable positive one, else None."""
    velocity = getattr(motor, "velocity", None)
    if velocity is None:
        return None
    value = yield from bps.rd(velocity)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def coordinate_names(agent_config: dict, motors: Sequence, reducer) -> list[str]:
    """The agent config's coordinates (paired in order) if it names them; else the
    coordinate the reducer places at each motor's readback; else the motor names."""
    if agent_config.get("coordinates"):
        return [c["name"] for c in agent_config["coordinates"]]
    positions = dict(getattr(reducer, "positions", None) or {})
    if not positions:
        return [m.name for m in motors]
    by_readback = {field: coordinate for coordinate, field in positions.items()}
    missing = [m.name for m in motors if m.name not in by_readback]
    if missing:
        raise PlanArgumentError(f"reducer positions {positions} place no coordinate at the "
                                f"readback of {missing}")
    return [by_readback[m.name] for m in motors]


def value_name(agent_config: dict, reducer, value: str | None) -> str:
    """The modelled value: ``value``, else the reducer's, else the agent config's. Raises
    PlanArgumentError if none is known or if they disagree."""
    given = {k: v for k, v in (("value", value),
                               ("the reducer's value_name", getattr(reducer, "value_name", None)),
                               ("the agent's value", agent_config.get("value"))) if v}
    if not given:
        raise PlanArgumentError("no value name: give value= (e.g. 'det_norm') or a reducer "
                                "with a value_name")
    if len(set(given.values())) > 1:
        raise PlanArgumentError("value names disagree: " + ", ".join(
            f"{k} {v!r}" for k, v in given.items()))
    return next(iter(given.values()))


def run_problem(agent_config: dict, motors: Sequence, bounds: Sequence[Bounds],
                units: Sequence[str], velocities: Sequence[float | None], reducer,
                value: str | None, budget: dict[str, float | None] | None = None
                ) -> dict[str, Any]:
    """The run's problem (``agent.problem.Problem`` as JSON): coordinates with the plan's
    bounds, the motors' units and velocities (the agent config's where a motor gives none)
    and the agent config's resolutions, the value name, and the plan's ``budget``
    (``max_points``, ``max_time_s``; ``agent.config.RunBudget``) where it gives one."""
    names = coordinate_names(agent_config, motors, reducer)
    defaults = {c["name"]: c for c in agent_config.get("coordinates") or []}
    coordinates = []
    for name, (lo, hi), egu, velocity in zip(names, bounds, units, velocities, strict=True):
        default = defaults.get(name, {})
        coordinates.append({"name": name, "low": lo, "high": hi,
                            "units": egu or default.get("units", ""),
                            "velocity": velocity or default.get("velocity"),
                            "resolution": default.get("resolution")})
    problem = {"coordinates": coordinates, "value": value_name(agent_config, reducer, value)}
    given = {k: v for k, v in (budget or {}).items() if v is not None}
    return {**problem, "budget": given} if given else problem


def start_agent_session(agent, run_uid: str, problem: dict[str, Any],
                        continue_session: str | None) -> MsgGenerator[Any]:
    """Start (or continue) the agent's run session for this run. An agent without sessions
    (``start_session``) serves its one problem; ``continue_session`` then is refused.
    Raises PlanArgumentError with the agent's reason if it refuses."""
    start = getattr(agent, "start_session", None)
    if start is None:
        if continue_session is not None:
            raise PlanArgumentError(f"continue_session={continue_session!r}: the agent "
                                    f"{type(agent).__name__} has no sessions")
        return None
    try:
        started = yield from tasks.run_coroutine(
            lambda: start(run_uid, problem, continue_session))
    except AgentRequestError as exc:
        raise PlanArgumentError(f"run {run_uid}: {exc}") from None
    if started.continued:
        logger.info("run %s continues agent session %s (%d measurements, runs %s)", run_uid,
                    started.uid, started.n_measurements, started.runs)
    return started


def in_session(agent, problem: dict[str, Any], continue_session: str | None,
               steps: MsgGenerator[Any]) -> Callable[[str], MsgGenerator[Any]]:
    """A plan taking the run's uid: start the agent session, then ``steps``."""

    def plan(run_uid: str) -> MsgGenerator[Any]:
        yield from start_agent_session(agent, run_uid, problem, continue_session)
        return (yield from steps)

    return plan
