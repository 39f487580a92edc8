"""The drift case: re-aligning a beamline whose DCM pitch drifted since yesterday's alignment,
with yesterday's measurements (warm start) or without (cold), from the same point.

Protocol (fixed before any run; OPTICS.md counting noise as in bench_alignment.py):

1. Day 1, t = 0: cold trust-region BO from a +-20 % misaligned start (the seed's start of
   bench_alignment.py), ``--day1`` evaluations. Its best point b1 is where the beamline is
   left; its measurements are the history.
2. Overnight the DCM pitch drifts by ``s`` urad, chosen per seed so that J(b1) halves
   (``J(b1, t) = 0.5 J(b1, 0)``): the optics model's drift (``sim.optics.params.DriftParams``)
   at ``--hours`` hours.
3. Day 2, from b1, ``--day2`` evaluations each, on the same noise seed:
   - ``cold``: trust-region BO with no history;
   - ``warm``: the same, told the day-1 measurements first (``align(history=...)``);
   - ``warm_stale_noise``: the same, with each day-1 measurement's variance inflated to a
     relative standard deviation of ``--stale-rsd`` (the data are known to be old);
   - ``warm_shape``: no day-1 data, but day 1's last GP hyperparameters (the shape of the
     optics: length scales, which do not drift) as ``initial_hyperparameters``, and a
     start-up design of 2 points instead of 8;
   - ``warm_rebased``: b1 is measured first; the day-1 measurements are then told with their
     values scaled by J_today(b1) / J_day1(b1) (yesterday's map on today's level) and the
     stale relative noise; start-up design of 2 points;
   - ``warm_curvature``: no day-1 data, but day 1's curvature of log J at its optimum
     (``TrustRegionBO.curvature()``) as the prior mean's fixed curvature
     (``prior_curvature``) and day 1's hyperparameters; start-up design of 2 points;
   - ``nelder_mead``: the baseline, cold.
   Scored on the noise-free objective at t = day 2 against J*(t) (the optimum after drift).

``--no-drift``: the control case, nothing drifted but the motors were moved: day 2 starts
from a fresh +-10 % misalignment around the optimum (the warm variant of
bench_alignment.py), and yesterday's data are still true.

    python benchmarks/bench_alignment_drift.py [--seeds 10] [--day1 150] [--day2 100]
        [--no-drift]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.alignment_harness import run  # noqa: E402
from benchmarks.bench_alignment import CountingCamera, setup  # noqa: E402

METHODS = ("cold", "warm", "warm_stale_noise", "warm_shape", "warm_rebased", "warm_curvature",
           "nelder_mead")


class DriftingCamera(CountingCamera):
    """CountingCamera at a fixed time ``t_s`` of the model's drift."""

    def __init__(self, model, seed: int, t_s: float):
        super().__init__(model, seed)
        self.t_s = t_s

    def expected(self, point: dict) -> tuple[float, float, float]:
        m = self.model.moments(self.model.vector(point)[None, :], self.t_s)
        signal = float(m["flux"][0] * m["fraction"][0]) * \
            self.model.params.camera.counts_per_photon * self.t
        return self.model.objective(point, self.t_s), signal, float(m["fraction"][0])


def drifted_model(model, shift_urad: float, hours: float):
    from sim.optics import OpticsModel
    from sim.optics.params import DriftParams

    drift = DriftParams(dof="dcm.pitch", rate_per_hour=shift_urad / hours)
    return OpticsModel(model.params.model_copy(update={"drift": drift}))


def halving_shift(model, b1: dict) -> float:
    """The DCM pitch shift (urad) that halves J at b1 (bisection on the noise-free J)."""
    j0 = model.objective(b1)
    point = dict(b1)
    lo, hi = 0.0, 60.0
    for _ in range(50):
        mid = (lo + hi) / 2
        point["dcm.pitch"] = b1["dcm.pitch"] + mid
        lo, hi = (mid, hi) if model.objective(point) > 0.5 * j0 else (lo, mid)
    return (lo + hi) / 2


def _bo(coords, start, budget, seed, **over):
    import agent.optimise as ao
    return ao.make_optimiser(ao.make_config(ao.TrustRegionBOConfig, {
        "coordinates": coords, "value": "flux_density", "start": start,
        "max_evaluations": budget, "seed": seed, **over}))


def task(args: tuple) -> list[dict]:
    seed, a = args
    from threadpoolctl import threadpool_limits

    import agent.optimise as ao
    from sim.optics import default_bounds
    from sim.optics.scoring import find_optimum

    threadpool_limits(1)
    model, camera, coords, start, j_star0 = setup(seed, False, 0.2)
    day1 = _bo(coords, start, a.day1, seed)
    rec1 = run(day1, camera, model.objective, a.day1, start=start, value="flux_density")
    history = day1.measurements
    shape = list(day1.hyperparameters)
    h = day1.curvature()
    b1 = day1.best()[0]
    day1.close()
    shift = 0.0 if a.no_drift else halving_shift(model, b1)
    t_s = a.hours * 3600.0
    drifted = drifted_model(model, shift, a.hours)
    bounds = default_bounds(False)
    _, j_star = find_optimum(_AtTime(drifted, t_s), bounds)
    truth = lambda p: drifted.objective(p, t_s)  # noqa: E731
    if a.no_drift:  # the motors were moved, the optics did not change
        from sim.optics.scoring import misaligned_start
        optimum, _ = find_optimum(model, bounds)
        b1 = misaligned_start(model, bounds, optimum, 0.1, np.random.default_rng(seed + 500))
    out = []
    for method in a.methods:
        cam = DriftingCamera(drifted, seed + 1000, t_s)
        if method == "nelder_mead":
            opt = ao.make_optimiser(ao.make_config(ao.NelderMeadConfig, {
                "coordinates": coords, "value": "flux_density", "start": b1,
                "max_evaluations": a.day2, "seed": seed}))
            told = []
        elif method == "warm_rebased":
            told = []
        elif method == "warm_curvature":
            opt = _bo(coords, b1, a.day2, seed, initial_hyperparameters=shape, n_initial=2,
                      prior_curvature=h.tolist())
            told = []
        elif method == "warm_shape":
            opt = _bo(coords, b1, a.day2, seed, initial_hyperparameters=shape, n_initial=2)
            told = []
        else:
            told = [] if method == "cold" else history
            if method == "warm_stale_noise":
                told = [_stale(m, a.stale_rsd) for m in history]
            opt = _bo(coords, b1, a.day2 + len(told), seed)
        if told:
            for m in told:
                opt.tell(m)
        if method == "warm_rebased":
            opt = _bo(coords, b1, a.day2 + len(history), seed, n_initial=2)
            truths = _rebase(opt, cam, b1, history, a.stale_rsd, truth(b1))
        else:
            truths = []
        rec = run(opt, cam, truth, a.day2 - len(truths), start=b1, value="flux_density")
        opt.close()
        best = np.maximum.accumulate(np.array(truths + rec.truth) / j_star)
        hit = np.nonzero(best >= 0.95)[0]
        out.append({"seed": seed, "method": method, "shift_urad": shift,
                    "day1_best_ratio": float(np.max(rec1.truth) / j_star0),
                    "start_ratio": truth(b1) / j_star,
                    "evals_to_target": int(hit[0] + 1) if hit.size else None,
                    "best_at": {str(b): float(best[min(b, len(best)) - 1])
                                for b in (10, 25, 50, 100) if b <= a.day2},
                    "lost": int(sum(rec.lost))})
    return out


class _AtTime:
    """An OpticsModel view at a fixed time, for find_optimum (which calls objective_array)."""

    def __init__(self, model, t_s: float):
        self.model, self.t_s = model, t_s
        self.dofs, self.params = model.dofs, model.params

    def objective_array(self, points):
        return self.model.objective_array(points, self.t_s)

    def vector(self, positions):
        return self.model.vector(positions)


def _rebase(opt, cam, b1, history, rsd, truth_b1) -> list[float]:
    """Measure b1, then tell the day-1 history scaled to today's level (warm_rebased)."""
    from agent.messages import Measurement

    result = cam(b1)
    if result is None:
        raise RuntimeError("beam lost at yesterday's best point")
    y0, var0 = result
    opt.tell(Measurement(run_uid="day2", seq=0, positions=b1, values={"flux_density": y0},
                         variances={"flux_density": var0}))
    then = max(m.values["flux_density"] for m in history if m.failure is None)
    scale = y0 / then
    for m in history:
        if m.failure is None:
            v = m.values["flux_density"] * scale
            m = m.model_copy(update={"values": {"flux_density": v},
                                     "variances": {"flux_density": (rsd * v) ** 2}})
        opt.tell(m)
    return [truth_b1]


def _stale(m, rsd: float):
    if m.failure is not None:
        return m
    value = m.values["flux_density"]
    var = max((m.variances or {}).get("flux_density", 0.0), (rsd * value) ** 2)
    return m.model_copy(update={"variances": {"flux_density": var}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--day1", type=int, default=150)
    ap.add_argument("--day2", type=int, default=100)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--stale-rsd", type=float, default=0.3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--no-drift", action="store_true",
                    help="control case: no drift, day 2 from a fresh +-10 %% misalignment")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                         "alignment_drift.json"))
    a = ap.parse_args()
    t0 = time.time()
    with get_context("spawn").Pool(a.workers) as pool:
        rows = [r for rs in pool.map(task, [(s, a) for s in range(a.seeds)], chunksize=1)
                for r in rs]
    report = {"protocol": __doc__, "args": vars(a), "wall_s": time.time() - t0, "methods": {}}
    print(f"{'method':18s} {'median evals to 95%':>20s} {'success':>8s} {'median J/J* @25':>16s}"
          f" {'@50':>6s}")
    for method in a.methods:
        mine = [r for r in rows if r["method"] == method]
        evals = [r["evals_to_target"] for r in mine]
        done = sorted(e for e in evals if e is not None)
        med = float(np.median([e if e is not None else np.inf for e in evals]))
        at25 = float(np.median([r["best_at"]["25"] for r in mine]))
        at50 = float(np.median([r["best_at"].get("50", np.nan) for r in mine]))
        report["methods"][method] = {
            "median_evals_to_target": med if np.isfinite(med) else None,
            "success_rate": len(done) / len(mine), "median_best_at_25": at25,
            "median_best_at_50": at50, "evals_to_target": evals}
        print(f"{method:18s} {med:20.1f} {len(done) / len(mine):8.0%} {at25:16.3f} {at50:6.3f}")
    report["runs"] = rows
    Path(a.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {a.out} in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
