"""Alignment strategies built on ``align`` and on stock bluesky plans.

- :func:`progressive_align`: element by element from the source (each group of motors
  with its own budget and stop on no improvement), then a global pass over all of them,
  warm-started with everything the stages measured.
- :func:`sequential_align`: the beamline status quo as a baseline: passes of 1-D
  ``rel_scan`` per motor with ``PeakStats``, moving to each scan's best reading, with the
  scan width shrinking each pass.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.callbacks.fitting import PeakStats
from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator

from agent.messages import Measurement
from plans.align import AlignmentResult, align
from plans.errors import PlanArgumentError
from plans.preflight import motor_limits


def _positions(motors) -> MsgGenerator[dict[str, float]]:
    out = {}
    for m in motors:
        out[m.name] = float((yield from bps.rd(m)))
    return out


def progressive_align(
    detectors: Sequence[Readable],
    stages: Sequence[Sequence[Movable]],
    *,
    value: str = "flux_density",
    stage_evaluations: int = 30,
    patience: int | None = 10,
    global_evaluations: int = 60,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    options: Mapping[str, Any] | None = None,
    md: dict | None = None,
) -> MsgGenerator[list[AlignmentResult]]:
    """Align ``stages`` (groups of motors, in beam order) one by one, then all together.

    Parameters
    ----------
    detectors : list of Readable
        Detectors triggered and read at each point (queued by name), as for ``align``.
    stages : list of list of Movable
        Groups of motors in beam order (queued by name), e.g. ``[[dcm.pitch, dcm.roll],
        [ssa.center, ssa.gap], [vkb.pitch, ...]]``.
    value : str, optional
        The event field to maximise, as for ``align``.
    stage_evaluations : int, optional
        Budget of each stage, evaluations (failed ones included).
    patience : int, optional
        A stage stops after this many evaluations without a 1 % improvement.
    global_evaluations : int, optional
        Budget of the final pass over every motor, evaluations (0: no global pass).
    bounds : dict, optional
        ``{motor name: (low, high)}`` in each motor's engineering units; default the
        motor's soft limits.
    options : dict, optional
        Further fields of the optimiser's config, as for ``align``.
    md : dict, optional
        Metadata merged into each run's start document.

    Returns
    -------
    list of AlignmentResult
        The result of every stage and of the global pass; one run each.

    Raises
    ------
    PlanArgumentError
        For an empty stage or a motor in two stages.
    """
    motors = [m for group in stages for m in group]
    names = [m.name for m in motors]
    if not stages or any(not group for group in stages) or len(set(names)) != len(names):
        raise PlanArgumentError(f"stages must be non-empty groups, each motor in one: {names}")
    bounds = dict(bounds or {})
    results, history = [], []
    for k, group in enumerate(stages):
        fixed = yield from _positions(m for m in motors if m not in group)
        result = yield from align(
            detectors, *group, value=value, max_evaluations=stage_evaluations,
            patience=patience, options=options,
            bounds={m.name: bounds[m.name] for m in group if m.name in bounds},
            md={"progressive_stage": k, **(md or {})})
        results.append(result)
        history += [_with_fixed(m, fixed) for m in result.measurements]
    if global_evaluations > 0:
        results.append((yield from align(
            detectors, *motors, value=value, max_evaluations=global_evaluations,
            options=options, bounds=bounds, history=history,
            md={"progressive_stage": "global", **(md or {})})))
    return results


def _with_fixed(m: Measurement, fixed: Mapping[str, float]) -> Measurement:
    """A stage's measurement placed in the full space (the other motors stood still)."""
    return m.model_copy(update={"positions": {**fixed, **m.positions}})


def sequential_align(
    detectors: Sequence[Readable],
    *motors: Movable,
    value: str = "flux_density",
    passes: int = 3,
    num: int = 11,
    width_fraction: float = 0.5,
    shrink: float = 0.5,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    md: dict | None = None,
) -> MsgGenerator[AlignmentResult]:
    """Baseline: ``passes`` rounds of ``rel_scan`` over each motor in turn (module doc).

    Pass ``p`` scans ``num`` points over ``width_fraction * shrink**p`` of the motor's range
    (clipped to ``bounds``, default its soft limits) centred on where it is, then moves to
    the best reading (``PeakStats.max``). Evaluations = passes x motors x num.

    Parameters
    ----------
    detectors : list of Readable
        Detectors triggered and read at each point (queued by name).
    *motors : Movable
        The motors to scan, in turn (queued by name).
    value : str, optional
        The event field to maximise.
    passes : int, optional
        Rounds over all the motors.
    num : int, optional
        Points of each ``rel_scan``.
    width_fraction : float, optional
        Width of the first pass's scans, as a fraction of each motor's range (0 to 1].
    shrink : float, optional
        Factor on the width after each pass (0 to 1].
    bounds : dict, optional
        ``{motor name: (low, high)}`` in each motor's engineering units; default the
        motor's soft limits.
    md : dict, optional
        Metadata merged into each scan's start document.

    Returns
    -------
    AlignmentResult
        The final positions and the best value of the last scan.

    Raises
    ------
    PlanArgumentError
        For passes or num < 1 or a motor without limits.
    """
    if passes < 1 or num < 2 or not 0 < width_fraction <= 1 or not 0 < shrink <= 1:
        raise PlanArgumentError(f"passes={passes} >= 1, num={num} >= 2, 0 < width_fraction="
                                f"{width_fraction} <= 1 and 0 < shrink={shrink} <= 1 needed")
    limits = {}
    for m in motors:
        pair = (bounds or {}).get(m.name) or (yield from motor_limits(m))
        if pair is None:
            raise PlanArgumentError(f"{m.name} has no soft limits: give bounds")
        limits[m.name] = pair
    peak = None
    for p in range(passes):
        for motor in motors:
            lo, hi = limits[motor.name]
            here = float((yield from bps.rd(motor)))
            half = width_fraction * shrink**p * (hi - lo) / 2
            stats = PeakStats(motor.name, value)
            yield from bpp.subs_wrapper(bp.rel_scan(
                detectors, motor, max(lo, here - half) - here, min(hi, here + half) - here,
                num, md={"plan_name": "sequential_align", "pass": p, **(md or {})}), stats)
            if stats.max is not None:
                peak = float(stats.max[1])
                yield from bps.mv(motor, float(stats.max[0]))
    final = yield from _positions(motors)
    return AlignmentResult(best=final, value=peak, remeasured=None,
                           evaluations=passes * len(motors) * num, failures=0,
                           stop_reason=f"{passes} passes done")
