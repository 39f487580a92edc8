"""``gp_scan``: an autonomous scan whose points come from the GP agent.

Each step asks the agent for a point, moves there, checks the readbacks arrived within
tolerance, then triggers and reads the detectors. The next proposal is computed while the
current point is measured (pipelined), so the agent's thinking hides behind the beamtime.
Every proposal is also recorded in the run's ``proposals`` stream (see plans.provenance).

Each proposal is checked before anything moves (``check_proposal``): a misbehaving agent fails
the run with a ``ProposalError`` naming the agent, the proposal and the offending field. Why
the run ended (the agent's stop reason, or the plan's budget) is logged and written to the
stop document's ``reason``.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator, RunEngineControlException
from pydantic import ValidationError

from agent.errors import AgentTimeoutError
from agent.messages import Proposal
from plans import tasks
from plans.agent_device import AgentDevice, agent_client
from plans.agent_session import in_session, motor_velocity, run_problem
from plans.errors import MoveVerificationError, PlanArgumentError, PlanError
from plans.preflight import Bounds, check_bounds, check_fields, motor_tolerance
from plans.provenance import STREAM, ProposalRecorder
from plans.reconnect import Reconnector

DEFAULT_TOLERANCE = 1e-3  # egu, used only where a motor exposes no RDBD
# s: a run that ends early waits at most this for its prefetched proposal, and as long again
# for the agent to take its unmeasured proposals back
RELEASE_WAIT_S = 2.0
logger = logging.getLogger(__name__)


class ProposalError(ValueError, PlanError):
    """The agent answered with a proposal the plan cannot measure. The message names the
    agent (its address), the proposal (its id) and the offending field, value or bound."""


def agent_address(agent) -> str:
    """Where ``agent`` answers (an AgentClient's address), else its type name."""
    return str(getattr(agent, "address", None) or type(agent).__name__)


def parse_motor_bounds(args: Sequence) -> tuple[list[Movable], list[Bounds]]:
    """Split ``motor1, (lo, hi), motor2, (lo, hi), ...``. Raises PlanArgumentError."""
    if not args or len(args) % 2:
        raise PlanArgumentError(
            f"expected motor, (lo, hi) pairs; got {len(args)} positional arguments"
        )
    motors, bounds = list(args[0::2]), []
    for motor, pair in zip(motors, args[1::2], strict=True):
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise PlanArgumentError(
                f"bounds of {motor.name} must be (lo, hi); got {pair!r}"
            ) from None
        bounds.append((lo, hi))
    return motors, bounds


def check_agent(agent_config: dict, motors: Sequence, bounds: Sequence[Bounds],
                max_points: int | None, units: Sequence[str] | None = None) -> list[str]:
    """Refuse a run the agent cannot serve. Returns the agent's coordinate names, in motor order.

    The agent's coordinates pair with the motors in order; their bounds must match the plan's
    (the agent proposes inside its own bounds), and so must their units where both the
    coordinate and the motor (EGU) name one.
    """
    coordinates = agent_config["coordinates"]
    if len(coordinates) != len(motors):
        raise PlanArgumentError(
            f"agent models {len(coordinates)} coordinates {[c['name'] for c in coordinates]} "
            f"but the plan moves {len(motors)} motors {[m.name for m in motors]}"
        )
    for motor, (lo, hi), c in zip(motors, bounds, coordinates, strict=True):
        if not (math.isclose(c["low"], lo) and math.isclose(c["high"], hi)):
            raise PlanArgumentError(
                f"bounds of {motor.name} [{lo}, {hi}] differ from the agent's coordinate "
                f"{c['name']!r} bounds [{c['low']}, {c['high']}] {c.get('units', '')}"
            )
    for motor, egu, c in zip(motors, units or [""] * len(motors), coordinates, strict=True):
        if egu and c.get("units") and egu != c["units"]:
            raise PlanArgumentError(
                f"{motor.name} moves in {egu!r} but the agent's coordinate {c['name']!r} is "
                f"in {c['units']!r}"
            )
    stop = agent_config.get("stop") or {}
    agent_stops = [stop.get(k) for k in ("max_points", "max_time_s", "target_uncertainty")]
    if max_points is None and all(v is None for v in agent_stops):
        raise PlanArgumentError("no stop condition: give max_points or configure the agent's stop")
    return [c["name"] for c in coordinates]


def move_verified(motors: Sequence, targets: Sequence[float],
                  tolerances: Sequence[float], statuses: list | None = None
                  ) -> MsgGenerator[None]:
    """Move all motors together, then check each readback is within tolerance of its target.

    ``statuses``, if given, gets the move's statuses as they start (``bps.mv`` returns them
    only once all are done; plans.reconnect waits for those of a move cut by a disconnect).
    Raises MoveVerificationError naming the motor, target, readback and tolerance.
    """
    group = f"move_verified-{time.monotonic_ns()}"
    for motor, target in zip(motors, targets, strict=True):
        status = yield from bps.abs_set(motor, target, group=group)
        if statuses is not None:
            statuses.append(status)
    yield from bps.wait(group=group)
    for motor, target, tol in zip(motors, targets, tolerances, strict=True):
        readback = yield from bps.rd(motor)
        if readback is None:  # the read was cut by a hard pause; resumed runs answer None
            readback = yield from bps.rd(motor)
        readback = float(readback)
        if abs(readback - target) > tol:
            raise MoveVerificationError(
                f"{motor.name} reported done at {readback} but the target was {target} "
                f"(tolerance {tol})"
            )


def reducer_fields(reducer) -> list[str]:
    """Event fields a reducer needs from the detectors (motor readbacks excluded)."""
    names = [getattr(reducer, attr, None) for attr in ("detector", "monitor", "image")]
    return [n for n in names if n]


def check_reducer(reducer, coordinates: Sequence[str], motors: Sequence) -> None:
    """The reducer must place each coordinate at the readback of the motor paired with it."""
    expected = {c: m.name for c, m in zip(coordinates, motors, strict=True)}
    if dict(reducer.positions) != expected:
        raise PlanArgumentError(
            f"reducer positions {dict(reducer.positions)} do not match the agent's coordinates "
            f"paired with the motors' readbacks {expected}"
        )


def start_metadata(detectors, motors, bounds: Sequence[Bounds], args, agent_config: dict,
                   max_points: int | None, tolerance: float | None, md: dict | None,
                   continue_session: str | None = None, max_time_s: float | None = None
                   ) -> dict:
    """The start document's plan arguments and agent configuration (provenance). A run that
    continues an agent session names it in ``agent_session`` (otherwise the run's own uid
    is its session's)."""
    return {
        "plan_name": "gp_scan",
        "plan_args": {
            "detectors": [d.name for d in detectors],
            "args": [x.name if hasattr(x, "name") else list(x) for x in args],
            "max_points": max_points,
            "max_time_s": max_time_s,
            "tolerance": tolerance,
            "continue_session": continue_session,
        },
        **({"agent_session": continue_session} if continue_session else {}),
        "detectors": [d.name for d in detectors],
        "motors": [m.name for m in motors],
        "agent_config": agent_config,
        "hints": {"dimensions": [([m.name], "primary") for m in motors]},
        # BestEffortCallback's live map spans these (motor order, like grid_scan's)
        "extents": [[lo, hi] for lo, hi in bounds],
        **({"num_points": max_points} if max_points else {}),
        **(md or {}),
    }


def wait_for_proposal(call: tasks.BackgroundCall, agent, timeout_s: float
                      ) -> MsgGenerator[Proposal]:
    """The proposal ``call`` asked for. Raises AgentTimeoutError after ``timeout_s`` s."""
    try:
        return (yield from tasks.result(call, timeout_s))
    except tasks.CallTimeoutError:
        raise AgentTimeoutError(
            f"no proposal from the agent at {agent_address(agent)} within "
            f"ask_timeout_s={timeout_s} s"
        ) from None
    except ValidationError as exc:  # AgentClient.ask: the reply is not a valid Proposal
        parts = [f"{'.'.join(map(str, e['loc'])) or '<proposal>'}={_short(e.get('input'))}: "
                 f"{e['msg']}" for e in exc.errors()[:3]]
        raise ProposalError(
            f"the agent at {agent_address(agent)} answered with an invalid proposal: "
            + "; ".join(parts)
        ) from None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_proposal(proposal: Any, agent, coordinates: Sequence[str],
                   bounds: Sequence[Bounds]) -> None:
    """Refuse a proposal the plan cannot measure, before anything moves.

    Phase 'done' needs nothing more. Otherwise the first point must give every coordinate a
    finite number inside the plan's bounds, and carry an acquisition value. Raises
    ProposalError naming the agent, the proposal id and the offending field and value.
    """
    pid = getattr(proposal, "proposal_id", None)
    what = f"proposal {pid} from the agent at {agent_address(agent)}"
    phase = getattr(proposal, "phase", None)
    points = getattr(proposal, "points", None)
    if not isinstance(points, list | tuple):
        raise ProposalError(f"{what}: points={_short(points)} is not a list of points")
    if phase == "done":
        return
    if not points:
        raise ProposalError(f"{what} has no points but its phase is {phase!r}, not 'done'")
    point = points[0]
    if not isinstance(point, Mapping):
        raise ProposalError(f"{what}: point 0 = {_short(point)} is not a mapping")
    for c, (lo, hi) in zip(coordinates, bounds, strict=True):
        if c not in point:
            raise ProposalError(
                f"{what}: point 0 lacks coordinate {c!r} (it has {sorted(map(str, point))})")
        value = point[c]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProposalError(f"{what}: {c}={_short(value)} is not a number")
        if not math.isfinite(value):
            raise ProposalError(f"{what}: {c}={value!r} is not finite")
        slack = 1e-9 * max(1.0, hi - lo)  # float noise of the agent's unit conversions
        if not lo - slack <= value <= hi + slack:
            raise ProposalError(
                f"{what}: {c}={value!r} is outside the plan's bounds [{lo}, {hi}]")
    values = getattr(proposal, "acquisition_values", None)
    if not isinstance(values, list | tuple) or len(values) < 1:
        raise ProposalError(f"{what}: acquisition_values={_short(values)} has no value for "
                            "point 0")


class Unmeasured:
    """Proposals this run holds but has not measured: the current one and the prefetched ask.

    The agent keeps proposed points pending (never proposed again) until measured; a run
    that ends early hands them back (``release_unmeasured``).
    """

    def __init__(self) -> None:
        self.current: dict[str, float] | None = None
        self.prefetch: tasks.BackgroundCall | None = None


def release_unmeasured(agent, unmeasured: Unmeasured,
                       wait_s: float = RELEASE_WAIT_S) -> MsgGenerator[None]:
    """Hand back what ``unmeasured`` holds. Best effort: the run is ending anyway, maybe
    because the agent is gone, so an agent error here is logged, never raised.

    Waiting for the prefetched proposal and releasing its points with the current one is one
    coroutine behind one message: an error the RunEngine throws into the plan meanwhile (a
    second device failing after the first, which started this clean-up) arrives only once
    that message is done, so it can no longer skip the release. It is logged, and the run
    still ends with the error that started the clean-up.
    """
    points = [unmeasured.current] if unmeasured.current else []
    call, unmeasured.current, unmeasured.prefetch = unmeasured.prefetch, None, None
    if call is None or not call.started or call.cancelled:  # never asked, or ask timed out
        call = None
    release = getattr(agent, "release", None)
    if call is None and (not points or release is None):
        return

    async def hand_back() -> None:
        held = list(points)
        if call is not None:
            task = call()
            try:
                held += (await asyncio.wait_for(task, wait_s)).points
            except asyncio.CancelledError:
                if not task.cancelled():  # this clean-up itself was cancelled
                    raise
                logger.warning("prefetched proposal not released: its ask was cancelled")
            except Exception as exc:
                logger.warning("prefetched proposal not released: %r", exc)
        if not held or release is None:
            return
        try:
            await asyncio.wait_for(release(held), wait_s)
        except Exception as exc:
            logger.warning("could not release %d unmeasured proposals: %r", len(held), exc)

    cleanup = tasks.BackgroundCall(hand_back)
    for _ in range(3):  # bounded: a hard pause may cut the wait (resumed, it answers None)
        try:
            yield from bps.wait_for([cleanup])
        except RunEngineControlException:
            raise
        except Exception as exc:
            logger.warning("error during the clean-up of the unmeasured proposals (the "
                           "release went on): %r", exc)
        if cleanup.started and cleanup().done():
            return
    logger.warning("release of %d unmeasured proposals not confirmed", len(points))


def measure_points(detectors, motors, tolerances, coordinates: Sequence[str], agent,
                   recorder: ProposalRecorder, max_points: int | None,
                   ask_timeout_s: float, bounds: Sequence[Bounds] | None = None,
                   max_time_s: float | None = None) -> MsgGenerator[str]:
    """For each point: record the proposal, move (verified), trigger and read; until a stop.

    The next proposal is requested as soon as the current one is known, so the agent decides
    while the current point is measured. Each saved event is followed at once by a
    checkpoint, so a pause or a suspender that rewinds never replays a saved event: the
    point in progress is re-taken from its move. A run that ends early (abort, stop, error;
    not halt, which runs no cleanup) hands its unmeasured proposals back to the agent.
    Each proposal is checked (``check_proposal``) against ``bounds`` (default: unbounded).
    No point is started once ``max_time_s`` (wall clock from the first step) has passed.

    Returns why the run ended: the agent's stop reason or the plan's budget (also logged).
    """
    unmeasured = Unmeasured()
    unmeasured.prefetch = tasks.BackgroundCall(lambda: agent.ask(1))
    limits = list(bounds) if bounds is not None else [(-math.inf, math.inf)] * len(coordinates)
    reconnect = Reconnector(detectors, motors)

    def steps() -> MsgGenerator[str]:
        measured, started = 0, time.monotonic()
        yield from reconnect.start()
        yield from bps.checkpoint()
        while max_points is None or measured < max_points:
            asked = time.monotonic()
            if max_time_s is not None and asked - started >= max_time_s:
                reason = (f"max_time_s={max_time_s} reached after {measured} points "
                          "(the plan's budget)")
                logger.info("gp_scan: %s", reason)
                return reason
            proposal: Proposal = yield from wait_for_proposal(unmeasured.prefetch, agent,
                                                              ask_timeout_s)
            unmeasured.prefetch = None
            check_proposal(proposal, agent, coordinates, limits)
            if proposal.phase == "done":
                reason = (f"the agent at {agent_address(agent)} stopped the run after "
                          f"{measured} points: "
                          f"{getattr(proposal, 'stop_reason', None) or 'no reason given'}")
                logger.info("gp_scan: %s", reason)
                return reason
            unmeasured.current = proposal.points[0]
            recorder.record(proposal, wait_s=time.monotonic() - asked)
            yield from bps.trigger_and_read([recorder], name=STREAM)
            yield from bps.checkpoint()
            measured += 1
            targets = [float(proposal.points[0][c]) for c in coordinates]
            if max_points is None or measured < max_points:
                here = dict(zip(coordinates, targets, strict=True))
                unmeasured.prefetch = tasks.BackgroundCall(
                    lambda here=here: agent.ask(1, current_position=here))
                yield from tasks.start(unmeasured.prefetch)
            yield from reconnect.point(
                lambda statuses, targets=targets: move_verified(motors, targets, tolerances,
                                                                statuses),
                index=measured - 1)
            unmeasured.current = None
            yield from bps.checkpoint()
        reason = f"max_points={max_points} measured (the plan's budget)"
        logger.info("gp_scan: %s", reason)
        return reason

    def cleanup() -> MsgGenerator[None]:
        yield from release_unmeasured(agent, unmeasured)
        yield from reconnect.close()

    try:
        return (yield from bpp.finalize_wrapper(steps(), cleanup()))
    except GeneratorExit:  # RE.halt(): no cleanup plan may run, but stop the agent call
        if unmeasured.prefetch is not None:
            unmeasured.prefetch.cancel()
        raise


def run_reporting_reason(plan: MsgGenerator[str | None] | Callable[[str], MsgGenerator],
                         md: dict | None = None) -> MsgGenerator[str]:
    """``bpp.run_wrapper``, but a run that succeeds gets ``plan``'s return value as the stop
    document's ``reason`` (bluesky's ``close_run(reason=...)``). ``plan`` may be a function
    of the run's uid. Returns the run's uid."""
    uid = yield from bps.open_run(md)
    reason: str | None = None

    def body() -> MsgGenerator[None]:
        nonlocal reason
        reason = yield from (plan(uid) if callable(plan) else plan)

    def except_plan(e: Exception) -> MsgGenerator[None]:
        if isinstance(e, RunEngineControlException):
            yield from bps.close_run(exit_status=e.exit_status)
        else:
            yield from bps.close_run(exit_status="fail", reason=str(e))

    def else_plan() -> MsgGenerator[None]:
        yield from bps.close_run(exit_status="success", reason=reason)

    yield from bpp.contingency_wrapper(body(), except_plan=except_plan, else_plan=else_plan)
    return uid


def gp_scan(
    detectors: Sequence[Readable],
    *args: Movable | Any,
    agent: AgentDevice,
    reducer: Callable | None = None,
    max_points: int | None = None,
    max_time_s: float | None = None,
    tolerance: float | None = None,
    ask_timeout_s: float = 30.0,
    value: str | None = None,
    continue_session: str | None = None,
    md: dict | None = None,
) -> MsgGenerator[None]:
    """Autonomous scan: measure where the GP agent says it learns (or gains) the most.

    Each point: ask the agent, move and verify the readbacks, trigger and read. The next
    proposal is computed while the current point is measured. Every proposal is an event of
    the ``proposals`` stream; the start document carries the plan arguments, the agent
    configuration and the ``extents`` (the bounds) of the map. The run is a session of its
    own on the agent: no other run's measurements are used unless ``continue_session`` names
    the session to continue.

    Parameters
    ----------
    detectors : list of Readable
        Detectors triggered and read at each point (queued by name: ``["scaler"]``).
    *args : Movable or (float, float)
        ``motor1, (lo, hi), motor2, (lo, hi), ...``: each motor (queued by name) and its
        bounds in the motor's engineering units (EGU, e.g. mm). At the start of the run
        they go to the agent as this run's problem, with each motor's units and velocity
        (``plans.agent_session``); where the agent config names coordinates they pair with
        the motors in order and their bounds must be the same.
    agent : AgentDevice
        The agent service (``plans.agent_device.AgentDevice``, named ``agent`` in the shipped
        queueserver profile); a bare ``agent.client.AgentClient`` works too (the
        ``beamagent agent`` service, or one served in-process with
        ``agent.service.serve_in_thread``).
    reducer : callable, optional
        A bluesky callback delivering this run's reduced data to the agent, e.g.
        ``agent.reducers.ScalarReducer(positions={"x": "sample_x", ...},
        request_address=...)`` (acknowledged delivery; queued by its name in the profile,
        e.g. ``"det_norm"``). Subscribed for this run only. None if reduction runs elsewhere
        (another process).
    max_points : int, optional
        Point budget of this run, points; None leaves the stop to the agent's own condition.
        The run's agent session sizes a budget-sized start-up design
        (``initial_design.budget_fraction``) to it.
    max_time_s : float, optional
        Beamtime budget of this run, s of wall clock from its first point (pauses count):
        no point is started after it. The run's agent session sizes a budget-sized design
        to it with its travel model (the motors' velocities and ``overhead_s``).
    tolerance : float, optional
        |readback - target| accepted after a move, in each motor's EGU, for every motor;
        default each motor's RDBD (1e-3 EGU where a motor has none).
    ask_timeout_s : float, optional
        How long to wait for a proposal before failing, s (default 30).
    value : str, optional
        Name of the modelled value; default the reducer's ``value_name`` (else the agent
        config's ``value``).
    continue_session : str, optional
        Uid of an earlier agent session (the uid of the run that started it) to continue:
        the agent models this run's points with that session's. Default None: a new session
        with no other run's data.
    md : dict, optional
        Metadata merged into the start document.

    Raises
    ------
    PlanArgumentError
        Before the first move, for bounds outside a motor's limits, an unknown detector
        field, bounds or units unlike the agent's, or no stop condition.
    MoveVerificationError
        A readback not within tolerance after a move.
    agent.errors.AgentTimeoutError
        The agent did not answer within ``ask_timeout_s``.
    ProposalError
        The agent proposed something the plan cannot measure (a missing or non-finite
        coordinate, a point outside the bounds, no points before 'done'); the message names
        the agent's address, the proposal id and the field.

    Notes
    -----
    The stop document's ``reason`` says why a successful run ended: the agent's stop reason
    (phase 'done') or the plan's budget (``max_points``, ``max_time_s``); it is logged at
    INFO as well.
    """
    agent = agent_client(agent)
    motors, bounds = parse_motor_bounds(args)
    if max_points is not None and max_points < 1:
        raise PlanArgumentError(f"max_points={max_points}: must be >= 1")
    if max_time_s is not None and not max_time_s > 0:
        raise PlanArgumentError(f"max_time_s={max_time_s}: must be > 0")
    units = yield from check_bounds(motors, bounds)
    agent_config = yield from tasks.run_coroutine(agent.config)
    if agent_config.get("coordinates"):  # the agent's own problem: the plan's must match
        check_agent(agent_config, motors, bounds, max_points, units)
    problem = None
    if hasattr(agent, "start_session"):  # an agent with run sessions: this run's problem
        velocities = []
        for motor in motors:
            velocities.append((yield from motor_velocity(motor)))
        budget = {"max_points": max_points, "max_time_s": max_time_s}
        problem = run_problem(agent_config, motors, bounds, units, velocities, reducer, value,
                              budget)
        agent_config = {**agent_config, **problem}  # the config of this run's agent session
    coordinates = check_agent(agent_config, motors, bounds, max_points, units)
    if reducer is not None:
        check_reducer(reducer, coordinates, motors)
        yield from check_fields(detectors, reducer_fields(reducer))
    tolerances = []
    for motor in motors:
        tolerances.append(tolerance if tolerance is not None else
                          (yield from motor_tolerance(motor, DEFAULT_TOLERANCE)))
    _md = start_metadata(detectors, motors, bounds, args, agent_config, max_points, tolerance,
                         md, continue_session, max_time_s)
    steps = measure_points(detectors, motors, tolerances, coordinates, agent,
                           ProposalRecorder(coordinates, units), max_points, ask_timeout_s,
                           bounds, max_time_s)
    steps = in_session(agent, problem, continue_session, steps)
    plan = bpp.stage_wrapper(run_reporting_reason(steps, md=_md), [*detectors, *motors])
    if reducer is not None:
        plan = bpp.subs_wrapper(plan, reducer)
    return (yield from plan)
