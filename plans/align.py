"""``align``: autonomous alignment of coupled motors on one detector field, in bluesky style.

    RE(align([flux], *bl.motors_of("dcm", "ssa", "vkb", "hkb"), value="flux_density",
             max_evaluations=150))

Each step asks the optimiser (``agent.optimise``; trust-region BO on gpCAM by default) for a
point, moves there and verifies the readbacks, triggers and reads the detectors, and tells
the optimiser the value of ``value`` (a failed evaluation, e.g. the beam off the camera, is
told as a failure, never as a good value). At the end the motors move to the best measured
point, which is measured again in the ``best`` stream. Every proposal is an event of the
``proposals`` stream (why each point was measured), as in ``gp_scan``.

Safety: the search stays inside ``bounds`` (default: each motor's soft limits), every move
is verified, and after ``max_failures_in_row`` failed evaluations in a row the motors go
back to the best point before the search goes on.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator

from agent.config import ConfigError
from agent.errors import MessageError
from agent.messages import Measurement
from agent.optimise import OPTIMISERS, make_optimiser
from agent.optimise.config import make_config
from plans import tasks
from plans.errors import PlanArgumentError
from plans.gp_scan import DEFAULT_TOLERANCE, move_verified
from plans.preflight import check_bounds, check_fields, motor_limits, motor_tolerance
from plans.provenance import STREAM, ProposalRecorder
from plans.reconnect import Reconnector

logger = logging.getLogger(__name__)

#: optimiser classes by their config ``kind``
OPTIMISER_KINDS = {cls.model_fields["kind"].default: cls for cls in OPTIMISERS}
BEST_STREAM = "best"


@dataclass
class AlignmentResult:
    """What an alignment run found. Positions in each motor's units; value in the field's."""

    best: dict[str, float] | None
    value: float | None
    remeasured: float | None
    evaluations: int
    failures: int
    stop_reason: str
    measurements: list[Measurement] = field(default_factory=list, repr=False)


def _field_value(reading: Mapping, key: str, default: Any = None) -> Any:
    entry = reading.get(key)
    return default if entry is None else entry["value"]


def measurement_from_reading(reading: Mapping, motors: Sequence, value: str, run_uid: str,
                             seq: int) -> Measurement:
    """A Measurement from one event's reading: positions = the motors' readbacks, the value
    and its variance (``<value>_variance``), or a failure (``<value>_failure`` non-empty or a
    non-finite value)."""
    positions = {m.name: float(_field_value(reading, m.name)) for m in motors}
    y = float(_field_value(reading, value, math.nan))
    failure = str(_field_value(reading, f"{value}_failure", "") or "")
    if not failure and not math.isfinite(y):
        failure = f"{value}={y}: not finite"
    common = {"run_uid": run_uid, "seq": seq, "positions": positions}
    if failure:
        return Measurement(**common, failure=failure[:500])
    var = _field_value(reading, f"{value}_variance")
    variances = {value: float(var)} if var is not None and math.isfinite(var) and var >= 0 else None
    return Measurement(**common, values={value: y}, variances=variances)


def _problem(motors, bounds, units, velocities, start, value, max_evaluations, kind, options):
    try:
        cls = OPTIMISER_KINDS[kind]
    except KeyError:
        raise PlanArgumentError(f"optimiser={kind!r}: choose one of {sorted(OPTIMISER_KINDS)}"
                                ) from None
    coordinates = [{"name": m.name, "low": lo, "high": hi, "units": u, "velocity": v}
                   for m, (lo, hi), u, v in zip(motors, bounds, units, velocities, strict=True)]
    try:
        return make_config(cls, {"coordinates": coordinates, "value": value, "start": start,
                                 "max_evaluations": max_evaluations, **(options or {})})
    except ConfigError as exc:
        raise PlanArgumentError(str(exc)) from None


def _read_motors(motors, bounds_by_name):
    """(bounds, units, velocities, start) for the motors; bounds default to soft limits."""
    bounds = []
    for m in motors:
        pair = bounds_by_name.get(m.name)
        if pair is None:
            pair = yield from motor_limits(m)
        if pair is None:
            raise PlanArgumentError(f"{m.name} has no soft limits: give bounds={{'{m.name}': "
                                    "(low, high)}}")
        bounds.append((float(pair[0]), float(pair[1])))
    units = yield from check_bounds(motors, bounds)
    velocities, start = [], {}
    for m in motors:
        velocity = getattr(m, "velocity", None)
        v = float((yield from bps.rd(velocity))) if velocity is not None else None
        velocities.append(v if v and v > 0 else None)
        start[m.name] = float((yield from bps.rd(m)))
    for m, (lo, hi), u in zip(motors, bounds, units, strict=True):
        if not lo <= start[m.name] <= hi:
            raise PlanArgumentError(f"{m.name} is at {start[m.name]} {u}, outside the bounds "
                                    f"[{lo}, {hi}] {u}: alignment starts where the motor is")
    return bounds, units, velocities, start


class _Progress:
    """Counts, the stop rule on no improvement, and a one-line log per evaluation."""

    def __init__(self, patience: int | None, min_improvement: float):
        self.patience, self.min_improvement = patience, min_improvement
        self.failures_in_row = self.failures = self.evaluations = 0
        self.best, self.since_best = -math.inf, 0

    def add(self, m: Measurement, value: str) -> None:
        self.evaluations += 1
        if m.failure is not None:
            self.failures += 1
            self.failures_in_row += 1
            self.since_best += 1
            logger.info("align: evaluation %d failed: %s", self.evaluations, m.failure)
            return
        self.failures_in_row = 0
        y = m.values[value]
        if y > self.best * (1 + self.min_improvement) or not math.isfinite(self.best):
            self.since_best = 0
        else:
            self.since_best += 1
        self.best = max(self.best, y)
        logger.info("align: evaluation %d %s=%.4g (best %.4g)", self.evaluations, value, y,
                    self.best)

    def stop_reason(self) -> str | None:
        if self.patience is not None and self.since_best >= self.patience:
            return (f"no improvement above {self.min_improvement:.0%} in the last "
                    f"{self.since_best} evaluations (patience={self.patience})")
        return None


def align(
    detectors: Sequence[Readable],
    *motors: Movable,
    value: str = "flux_density",
    max_evaluations: int = 100,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    optimiser: str = "trust_region_bo",
    options: Mapping[str, Any] | None = None,
    history: Iterable[Measurement] = (),
    max_failures_in_row: int = 5,
    patience: int | None = None,
    min_improvement: float = 0.01,
    tolerance: float | None = None,
    md: dict | None = None,
) -> MsgGenerator[AlignmentResult]:
    """Maximise the detector field ``value`` over ``motors`` (module doc).

    Parameters
    ----------
    detectors : list of Readable
        Detectors triggered and read at each point (queued by name); one of them reads
        ``value`` (and optionally ``<value>_variance`` and ``<value>_failure``, as
        ``plans.objective.FluxDensity`` does).
    *motors : Movable
        The motors to align (queued by name); each coordinate is named after its motor.
    value : str, optional
        The event field to maximise (default ``flux_density``, counts/s/um^2).
    max_evaluations : int, optional
        Evaluations of this run (failed ones included), the final re-measure of the best
        point excluded.
    bounds : dict, optional
        ``{motor name: (low, high)}`` in each motor's engineering units (EGU); default the
        motor's soft limits.
    optimiser : str, optional
        ``trust_region_bo`` (default), ``nelder_mead``, ``random_search`` or
        ``sequential_scan`` (``agent.optimise``).
    options : dict, optional
        Further fields of the optimiser's config (e.g. ``{"max_step_fraction": 0.1}``).
    history : list of agent.messages.Measurement, optional
        Earlier measurements (warm start, ``plans.warm_start``), same coordinates.
    max_failures_in_row : int, optional
        After this many failed evaluations in a row, move back to the best point.
    patience : int, optional
        Stop after this many evaluations without a relative improvement of
        ``min_improvement`` (None: run the whole budget).
    min_improvement : float, optional
        Relative improvement that resets ``patience`` (default 0.01, i.e. 1 %).
    tolerance : float, optional
        |readback - target| accepted after a move, in each motor's EGU; default each motor's
        RDBD.
    md : dict, optional
        Metadata merged into the start document.

    Returns
    -------
    AlignmentResult
        What the run found, also logged.

    Raises
    ------
    PlanArgumentError
        Before the first move, for an unknown field, bounds outside a motor's limits, a
        start outside the bounds or an invalid optimiser option.
    MoveVerificationError
        A readback missed its target.
    """
    if not motors:
        raise PlanArgumentError("align needs at least one motor")
    if max_evaluations < 1 or max_failures_in_row < 1 or (patience is not None and patience < 1):
        raise PlanArgumentError(f"max_evaluations={max_evaluations}, max_failures_in_row="
                                f"{max_failures_in_row} and patience={patience} must be >= 1")
    yield from check_fields(detectors, [value])
    bounds_list, units, velocities, start = yield from _read_motors(motors, dict(bounds or {}))
    history = list(history)
    problem = _problem(motors, bounds_list, units, velocities, start, value,
                       max_evaluations + len(history), optimiser, options)
    agent = make_optimiser(problem)
    try:
        for m in history:
            agent.tell(m)
    except MessageError as exc:
        agent.close()
        raise PlanArgumentError(f"history does not fit this alignment: {exc}") from None
    tolerances = []
    for motor in motors:
        tolerances.append(tolerance if tolerance is not None else
                          (yield from motor_tolerance(motor, DEFAULT_TOLERANCE)))
    _md = {"plan_name": "align", "detectors": [d.name for d in detectors],
           "motors": [m.name for m in motors], "optimiser": problem.model_dump(),
           "history_size": len(history), "plan_args": {
               "value": value, "max_evaluations": max_evaluations,
               "max_failures_in_row": max_failures_in_row, "patience": patience},
           "hints": {"dimensions": [([m.name], "primary") for m in motors]},
           "num_points": max_evaluations, **(md or {})}
    loop = _Loop(detectors, motors, tolerances, agent, value, start,
                 _Progress(patience, min_improvement), max_failures_in_row,
                 ProposalRecorder([m.name for m in motors], units))
    plan = bpp.run_wrapper(bpp.finalize_wrapper(loop.steps(), loop.cleanup()), md=_md)
    yield from bpp.stage_wrapper(plan, [*detectors, *motors])
    return loop.result


class _Loop:
    """The ask / move / read / tell loop of one ``align`` run."""

    def __init__(self, detectors, motors, tolerances, agent, value, start, progress,
                 max_failures_in_row, recorder):
        self.detectors, self.motors, self.tolerances = detectors, motors, tolerances
        self.agent, self.value, self.here = agent, value, dict(start)
        self.progress, self.max_failures_in_row = progress, max_failures_in_row
        self.recorder, self.run_uid = recorder, f"align-{uuid.uuid4()}"
        self.unmeasured: dict[str, float] | None = None
        self.result = AlignmentResult(None, None, None, 0, 0, "not started")
        # each evaluation survives an IOC restart (plans.reconnect), the camera behind a
        # FluxDensity watched too
        self.reconnect = Reconnector(detectors, motors, watched=[
            d.camera for d in detectors if getattr(d, "camera", None) is not None])

    def _ask(self) -> MsgGenerator:
        here = dict(self.here)
        return (yield from tasks.run_coroutine(
            lambda: asyncio.to_thread(self.agent.ask, 1, current_position=here)))

    def _go(self, point: Mapping[str, float], statuses: list | None = None
            ) -> MsgGenerator[None]:
        yield from move_verified(self.motors, [point[m.name] for m in self.motors],
                                 self.tolerances, statuses)
        self.here = {m.name: float(point[m.name]) for m in self.motors}

    def steps(self) -> MsgGenerator[None]:
        yield from self.reconnect.start()
        yield from bps.checkpoint()
        reason = None
        while reason is None:
            asked = time.monotonic()
            proposal = yield from self._ask()
            if proposal.phase == "done" or not proposal.points:
                reason = proposal.stop_reason or proposal.phase
                break
            point = proposal.points[0]
            self.unmeasured = point
            self.recorder.record(proposal, wait_s=time.monotonic() - asked)
            yield from bps.trigger_and_read([self.recorder], name=STREAM)
            yield from bps.checkpoint()
            reading = yield from self.reconnect.point(
                lambda statuses, point=point: self._go(point, statuses),
                index=self.progress.evaluations)
            self.unmeasured = None
            m = measurement_from_reading(reading, self.motors, self.value, self.run_uid,
                                         self.progress.evaluations)
            self.agent.tell(m)
            self.progress.add(m, self.value)
            yield from bps.checkpoint()
            reason = self.progress.stop_reason()
            if self.progress.failures_in_row >= self.max_failures_in_row:
                yield from self._back_to_best()
        yield from self._finish(reason)

    def _back_to_best(self) -> MsgGenerator[None]:
        best = self.agent.best()
        if best is None:
            return
        logger.warning("align: %d failed evaluations in a row; back to the best point %s",
                       self.progress.failures_in_row, best[0])
        yield from self._go(best[0])
        self.progress.failures_in_row = 0

    def _finish(self, reason: str) -> MsgGenerator[None]:
        best = self.agent.best()
        remeasured = None
        if best is not None:
            yield from self._go(best[0])
            reading = yield from bps.trigger_and_read([*self.detectors, *self.motors],
                                                      name=BEST_STREAM)
            remeasured = float(_field_value(reading, self.value, math.nan))
        self.result = AlignmentResult(
            best=best[0] if best else None, value=best[1] if best else None,
            remeasured=remeasured, evaluations=self.progress.evaluations,
            failures=self.progress.failures, stop_reason=reason,
            measurements=self.agent.measurements)
        logger.info("align: done (%s): best %s = %s at %s, re-measured %s", reason, self.value,
                    self.result.value, self.result.best, remeasured)

    def cleanup(self) -> MsgGenerator[None]:
        """Hand an unmeasured proposal back and close the optimiser (run ending early too)."""
        if self.unmeasured is not None:
            self.agent.release([self.unmeasured])
            self.unmeasured = None
        self.agent.close()
        yield from self.reconnect.close()
        yield from bps.null()
