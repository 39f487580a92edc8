"""align on in-process simulated axes (ophyd.sim SynAxis) and a soft objective: the plan's
logic (ask/move/read/tell, failures, back-to-best, warm start, stops), not the IOCs."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
from bluesky import RunEngine
from ophyd.sim import SynAxis

from plans.align import AlignmentResult, align
from plans.errors import PlanArgumentError
from plans.warm_start import measurements_from_documents

PEAK = {"ax": 1.0, "ay": -2.0, "az": 0.5}
BOUNDS = {"ax": (-5.0, 5.0), "ay": (-5.0, 5.0), "az": (-5.0, 5.0)}


class Objective:
    """A peaked objective of the axes' readbacks; fails (beam lost) beyond ``radius``."""

    def __init__(self, axes, radius=math.inf):
        self.name, self.parent, self.axes, self.radius = "objective", None, axes, radius
        self.reads = []

    def trigger(self):
        from ophyd.status import Status
        status = Status()
        status.set_finished()
        return status

    def _value(self):
        r2 = sum((ax.readback.get() - PEAK[ax.name]) ** 2 for ax in self.axes)
        return 1000.0 * math.exp(-r2 / (2 * 1.5**2)), math.sqrt(r2)

    def read(self):
        value, r = self._value()
        failure = "beam lost" if r > self.radius else ""
        self.reads.append({ax.name: ax.readback.get() for ax in self.axes})
        return {"objective": {"value": 0.0 if failure else value, "timestamp": 0.0},
                "objective_variance": {"value": value / 100 + 1e-3, "timestamp": 0.0},
                "objective_failure": {"value": failure, "timestamp": 0.0}}

    def describe(self):
        return {"objective": {"source": "test", "dtype": "number", "shape": []},
                "objective_variance": {"source": "test", "dtype": "number", "shape": []},
                "objective_failure": {"source": "test", "dtype": "string", "shape": []}}


@pytest.fixture
def axes():
    made = [SynAxis(name=n) for n in PEAK]
    for ax in made:
        ax.set(0.0).wait()
    return made


def run(RE, plan):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(plan)
    return docs


def events(docs, stream):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


def test_align_finds_the_peak_and_remeasures_it(axes):
    RE, det = RunEngine(), Objective(axes)
    result = {}

    def plan():
        result["r"] = yield from align([det], *axes, value="objective", max_evaluations=40,
                                       bounds=BOUNDS)

    docs = run(RE, plan())
    r: AlignmentResult = result["r"]
    assert r.evaluations == 40 and r.failures == 0
    assert r.value > 0.9 * 1000.0, r
    assert len(events(docs, "primary")) == 40
    assert len(events(docs, "proposals")) == 40
    best_events = events(docs, "best")
    assert len(best_events) == 1
    assert best_events[0]["data"]["ax"] == pytest.approx(r.best["ax"])
    assert r.remeasured == pytest.approx(r.value, rel=1e-9)  # noise-free objective
    start = next(d for n, d in docs if n == "start")
    assert start["plan_name"] == "align" and start["motors"] == list(PEAK)


def test_failures_are_not_modelled_and_the_plan_returns_to_the_best(axes):
    RE, det = RunEngine(), Objective(axes, radius=3.0)
    sets = []
    RE.msg_hook = lambda msg: sets.append((msg.obj.name, msg.args[0])) if msg.command == "set" \
        else None
    result = {}

    def plan():
        result["r"] = yield from align([det], *axes, value="objective", max_evaluations=30,
                                       bounds=BOUNDS, optimiser="random_search",
                                       max_failures_in_row=2)

    run(RE, plan())
    r = result["r"]
    failed = [m for m in r.measurements if m.failure]
    assert r.failures == len(failed) > 0
    assert all(not m.values for m in failed)
    moves = [dict(sets[i:i + 3]) for i in range(0, len(sets), 3)]
    # one move per evaluation; after 2 failures in a row a move back to the best so far;
    # at the end a move to the best
    expected, streak, best, returns = [], 0, None, 0
    for m in r.measurements:
        expected.append(m.positions)
        streak = streak + 1 if m.failure else 0
        if not m.failure and (best is None or m.values["objective"] > best[1]):
            best = (m.positions, m.values["objective"])
        if streak == 2 and best is not None:
            expected.append(best[0])
            streak, returns = 0, returns + 1
    assert returns > 0, "the test objective should fail twice in a row somewhere"
    assert moves == [*expected, r.best]


def test_warm_start_from_documents_keeps_the_best(axes):
    RE, det = RunEngine(), Objective(axes)
    first, second = {}, {}

    def plan(out, **kw):
        out["r"] = yield from align([det], *axes, value="objective", bounds=BOUNDS, **kw)

    docs = run(RE, plan(first, max_evaluations=25))
    history = measurements_from_documents(docs)
    assert len(history) == 25
    assert [m.positions for m in history] == [m.positions for m in first["r"].measurements]
    for ax in axes:
        ax.set(-4.0).wait()  # the beamline moved overnight
    docs2 = run(RE, plan(second, max_evaluations=3, history=history))
    assert second["r"].value >= first["r"].value  # the earlier best is known at once
    assert second["r"].evaluations == 3
    assert next(d for n, d in docs2 if n == "start")["history_size"] == 25


def test_patience_stops_a_run_that_no_longer_improves(axes):
    RE, det = RunEngine(), Objective(axes)
    out = {}

    def plan():
        out["r"] = yield from align([det], *axes, value="objective", bounds=BOUNDS,
                                    max_evaluations=200, patience=5, min_improvement=0.5)

    run(RE, plan())
    assert out["r"].evaluations < 200
    assert "patience=5" in out["r"].stop_reason


@pytest.mark.parametrize("kwargs, message", [
    ({"value": "nope"}, "detector field 'nope'"),
    ({"optimiser": "simplex"}, "choose one of"),
    ({"bounds": {**BOUNDS, "ax": (2.0, 5.0)}}, "outside the bounds"),
    ({"options": {"length_init": 7}}, "length_init"),
])
def test_bad_arguments_are_refused_before_any_move(axes, kwargs, message):
    RE, det = RunEngine(), Objective(axes)
    args = {"value": "objective", "bounds": BOUNDS, "max_evaluations": 5, **kwargs}
    with pytest.raises(PlanArgumentError, match=message):
        RE(align([det], *axes, **args))
    assert det.reads == []


def test_progressive_align_runs_stages_then_a_warm_global_pass(axes):
    from plans.align_strategies import progressive_align
    RE, det = RunEngine(), Objective(axes)
    out = {}

    def plan():
        out["r"] = yield from progressive_align(
            [det], [axes[:1], axes[1:]], value="objective", stage_evaluations=12,
            patience=None, global_evaluations=10, bounds=BOUNDS)

    docs = run(RE, plan())
    stage1, stage2, final = out["r"]
    assert (stage1.evaluations, stage2.evaluations, final.evaluations) == (12, 12, 10)
    starts = [d for n, d in docs if n == "start"]
    assert [s["progressive_stage"] for s in starts] == [0, 1, "global"]
    assert starts[2]["history_size"] == 24
    assert set(stage1.best) == {"ax"} and set(final.best) == set(PEAK)
    assert final.value >= max(stage1.value, stage2.value)


def test_sequential_align_is_rel_scans_with_peakstats(axes):
    from plans.align_strategies import sequential_align
    RE, det = RunEngine(), Objective(axes)
    out = {}

    def plan():
        out["r"] = yield from sequential_align([det], *axes, value="objective", passes=2,
                                               num=9, bounds=BOUNDS)

    docs = run(RE, plan())
    r = out["r"]
    assert r.evaluations == 2 * 3 * 9 == len(events(docs, "primary"))
    assert sum(1 for n, _ in docs if n == "start") == 6
    # separable peak: the scans find each coordinate to within the second pass's step
    for ax in axes:
        assert ax.readback.get() == pytest.approx(PEAK[ax.name], abs=10 * 0.25 / 8 + 1e-9)
    assert r.value == pytest.approx(det._value()[0])


def test_pause_and_resume_lose_and_repeat_no_evaluation(axes):
    from bluesky.utils import RunEngineInterrupted
    RE, det = RunEngine(), Objective(axes)
    out, seen = {}, []

    def pause_at_fifth(name, doc):
        if name == "event" and "objective" in doc["data"]:
            seen.append(doc["seq_num"])
            if len(seen) == 5:
                os.kill(os.getpid(), signal.SIGINT)  # a scientist's Ctrl-C

    def plan():
        out["r"] = yield from align([det], *axes, value="objective", max_evaluations=12,
                                    bounds=BOUNDS)

    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE.subscribe(pause_at_fifth)
    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    RE.resume()
    r = out["r"]
    primary = events(docs, "primary")
    assert len(primary) == r.evaluations == 12 == len(r.measurements)
    assert [e["seq_num"] for e in primary] == list(range(1, 13))
    ids = [e["data"]["proposal_id"] for e in events(docs, "proposals")]
    assert len(ids) == len(set(ids)) == 12
    assert [m.positions for m in r.measurements] == [
        {ax: e["data"][ax] for ax in PEAK} for e in primary]


def test_shape_from_documents_gives_the_earlier_runs_curvature_and_hyperparameters(axes):
    from plans.warm_start import shape_from_documents
    RE, det = RunEngine(), Objective(axes)
    out = {}

    def plan(**kw):
        out["r"] = yield from align([det], *axes, value="objective", bounds=BOUNDS, **kw)

    docs = run(RE, plan(max_evaluations=30))
    options = shape_from_documents(docs)
    h = np.array(options["prior_curvature"])
    assert h.shape == (3, 3) and np.all(np.linalg.eigvalsh(h) <= 1e-9)
    assert len(options["initial_hyperparameters"]) == 4
    run(RE, plan(max_evaluations=5, options=options))  # accepted by a new run


def test_best_effort_callback_sees_hints_for_one_plot(axes):
    RE, det = RunEngine(), Objective(axes)
    det.hints = {"fields": ["objective"]}
    docs = run(RE, align([det], *axes, value="objective", max_evaluations=3, bounds=BOUNDS))
    hints = {d["name"]: d.get("hints", {}) for n, d in docs if n == "descriptor"}
    assert hints["proposals"] == {"proposal": {"fields": []}}
    assert hints["primary"]["objective"] == {"fields": ["objective"]}
