"""Alignment benchmark on the Gaussian-beam optics model (sim.optics): the trust-region BO
against the baselines (sequential 1-D scans with a move to the peak, Nelder-Mead, random
search) on the same seeded misalignments, all DOFs free (OPTICS.md protocol).

Truth: J* from sim.optics.scoring.find_optimum. Starts: +-20 % of each range around the
optimum (``--fraction``; 0.1 for the warm start), re-drawn until at least 10 % of the beam is
on the camera and the signal stands out of the background. Noise: Poisson counting noise on
the total counts of one exposure (signal + background; the frame is not rendered, for
speed), so the measured J is J x (counts - background) / expected signal, with variance
J^2 (signal + background) / signal^2. The beam is lost (a failed evaluation) when less than
10 % of it is on the sensor or the background-subtracted counts are below 5 sigma of the
background.

    python benchmarks/bench_alignment.py [--seeds 20] [--variants default hard warm]
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

from benchmarks.alignment_harness import format_table, metrics, run, summarise  # noqa: E402

EXPOSURE_S = 0.01
MIN_ON_SENSOR = 0.1
DETECTION_SIGMA = 5.0
BUDGET = 200
VARIANTS = {"default": {"hard": False, "fraction": 0.2},
            "hard": {"hard": True, "fraction": 0.2},
            "warm": {"hard": False, "fraction": 0.1}}


def methods() -> dict[str, tuple[str, dict]]:
    """Name -> (config class name, overrides): the agent with its shipped defaults and the
    baselines."""
    return {"TrustRegionBO": ("TrustRegionBOConfig", {}),
            "NelderMead": ("NelderMeadConfig", {}),
            "SequentialScan": ("SequentialScanConfig", {}),
            "RandomSearch": ("RandomSearchConfig", {})}


#: TrustRegionBO knobs changed one at a time from the shipped defaults (``--ablation``)
ABLATIONS = {
    "bo_default": {},
    "prior_quadratic": {"prior_mean": "quadratic"},
    "prior_full_quadratic": {"prior_mean": "full_quadratic"},
    "acq_ei": {"acquisition": "ei"},
    "acq_ts": {"acquisition": "ts", "n_candidates": 1000},
    "beta_1": {"beta": 1.0},
    "beta_4": {"beta": 4.0},
    "length_init_0.4": {"length_init": 0.4},
    "length_init_0.1": {"length_init": 0.1},
    "success_tol_1": {"success_tolerance": 1},
    "failure_tol_5": {"failure_tolerance": 5},
    "failure_tol_11": {"failure_tolerance": 11},
    "n_initial_4": {"n_initial": 4},
    "n_initial_16": {"n_initial": 16},
    "train_every_4": {"train_every": 4},
    "train_every_16": {"train_every": 16},
    "local_points_60": {"local_points": 60},
    "perturb_0.5": {"perturb_probability": 0.5},
}


class CountingCamera:
    """measure(point) -> (J, variance) | None from the optics model with counting noise."""

    def __init__(self, model, seed: int, exposure_s: float = EXPOSURE_S):
        self.model = model
        self.rng = np.random.default_rng(seed)
        cam = model.params.camera
        self.t = exposure_s
        self.background = cam.background_cps * cam.size_x * cam.size_y * exposure_s

    def expected(self, point: dict) -> tuple[float, float, float]:
        m = self.model.moments(self.model.vector(point)[None, :])
        signal = float(m["flux"][0] * m["fraction"][0]) * \
            self.model.params.camera.counts_per_photon * self.t
        return self.model.objective(point), signal, float(m["fraction"][0])

    def detectable(self, point: dict) -> bool:
        _, s, frac = self.expected(point)
        return frac >= MIN_ON_SENSOR and s >= DETECTION_SIGMA * np.sqrt(self.background)

    def __call__(self, point: dict) -> tuple[float, float] | None:
        j, s, frac = self.expected(point)
        if frac < MIN_ON_SENSOR:
            return None
        k = self.rng.poisson(s + self.background) - self.background
        if k < DETECTION_SIGMA * np.sqrt(self.background) or s <= 0:
            return None
        return float(j * k / s), float(j ** 2 * (s + self.background) / s ** 2)


def setup(seed: int, hard: bool, fraction: float):
    from sim.optics import OpticsModel, OpticsParams, default_bounds, hard_params
    from sim.optics.scoring import find_optimum, misaligned_start

    model = OpticsModel(hard_params() if hard else OpticsParams())
    bounds = default_bounds(hard)
    optimum, j_star = find_optimum(model, bounds)
    camera = CountingCamera(model, seed)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        start = misaligned_start(model, bounds, optimum, fraction, rng, MIN_ON_SENSOR)
        if camera.detectable(start):
            break
    else:
        raise RuntimeError(f"seed {seed}: no detectable misaligned start")
    from sim.optics.dofs import dof_spec

    coords = [{"name": k, "low": lo, "high": hi, "units": dof_spec(k).egu}
              for k, (lo, hi) in bounds.items()]
    return model, camera, coords, start, j_star


def task(args: tuple) -> dict:
    name, (cls_name, over), seed, variant = args
    from threadpoolctl import threadpool_limits

    import agent.optimise as ao

    threadpool_limits(1)
    v = VARIANTS[variant]
    model, camera, coords, start, j_star = setup(seed, v["hard"], v["fraction"])
    config = ao.make_config(getattr(ao, cls_name), {
        "coordinates": coords, "value": "flux_density", "start": start,
        "max_evaluations": BUDGET, "seed": seed, **over})
    opt = ao.make_optimiser(config)
    rec = run(opt, camera, model.objective, BUDGET, start=start, value="flux_density")
    opt.close()
    spans = {c["name"]: c["high"] - c["low"] for c in coords}
    out = metrics(rec, j_star, start, spans)
    out.update(method=name, seed=seed, variant=variant,
               start_ratio=model.objective(start) / j_star)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--methods", nargs="+", default=list(methods()))
    ap.add_argument("--ablation", nargs="*", default=None, choices=list(ABLATIONS),
                    help="run these TrustRegionBO variants instead of the methods")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "alignment.json"))
    a = ap.parse_args()
    spec = {k: v for k, v in methods().items() if k in a.methods}
    if a.ablation is not None:
        spec = {k: ("TrustRegionBOConfig", ABLATIONS[k]) for k in a.ablation or ABLATIONS}
    tasks = [(n, spec[n], s, var) for var in a.variants for n in spec for s in range(a.seeds)]
    t0 = time.time()
    with get_context("spawn").Pool(a.workers) as pool:
        results = pool.map(task, tasks, chunksize=1)
    report = {"budget": BUDGET, "seeds": a.seeds, "exposure_s": EXPOSURE_S,
              "noise": "Poisson on total counts (signal + background), frame not rendered",
              "wall_s": time.time() - t0, "variants": {}}
    for var in a.variants:
        rows = {n: summarise([r for r in results if r["method"] == n and r["variant"] == var])
                for n in spec}
        for n in rows:
            rows[n]["evals_to_target"] = [r["evals_to_target"] for r in results
                                          if r["method"] == n and r["variant"] == var]
        report["variants"][var] = {"summary": rows, "runs": [
            r for r in results if r["variant"] == var]}
        print(f"\n== {var} ({VARIANTS[var]}) ==")
        print(format_table(rows))
    Path(a.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {a.out} in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
