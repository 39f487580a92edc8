"""Map quality at equal beamtime, motor travel included: agent vs serpentine raster vs random.

Setup (``SETUP``): a 20 mm square, both motors at 5 mm/s moving in parallel (move time =
max |dx_i| / v), 0.5 s per point besides motion. Values come from a counting model like the
simulator's (sim.physics): det ~ Poisson(det_cps * t * signal + dark), i0 ~ Poisson(i0_cps *
t + dark), value = (det / i0) * (i0_cps / det_cps) so that it estimates the signal; the
variance given to the engine is the counting-statistics estimate from the counts.

Scoring (the same for every method): the map is the posterior mean of the engine's GP with
hyperparameters trained on all of that method's data (``Engine.from_measurements`` with the
agent's own config), on a 101 x 101 truth grid; RMSE is against the noise-free truth. The
raster grid is also scored by bilinear interpolation and by a plain GP, and its reference RMSE
is the best of the three (the strictest target for the agent).

Reported per function and seed: RMSE ratio agent/grid at equal beamtime, and the fraction of
the grid's beamtime the agent needed to reach the grid's final RMSE (first checkpoint that
reaches it; target <= 0.5, goal <= 0.33). Functions: sim.samples particles, domains,
phase_boundary (geometry seed = seed) and two synthetic narrow-peak maps on a 0.02 background.

    /work/venv/bin/python benchmarks/bench_map_quality.py [--quick] [--seeds 0 1]
        [--agent-config configs/agent.yaml]   # model and acquisition settings (default: shipped)
        [--set key=json ...]   # agent config overrides, e.g. --set model='"log_gp"'

The agent's model and acquisition settings are those of ``--agent-config`` (default: the
shipped configs/agent.yaml), with ``--set`` overrides; the problem (coordinates, velocities,
budget) is this benchmark's. ``--set acquisition='"mapping"' --set kernel='"matern32"'
--set prior_mean='"data_mean"'`` gives the engine's defaults. results/map_quality_residual.json
was run with ``--set variation_measure='"residual"' --set variation_floor=0.25
--set travel_exponent=2.0``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from agent_settings import SHIPPED, model_settings  # noqa: E402
from scipy.interpolate import RegularGridInterpolator  # noqa: E402

from agent.config import make_engine_config  # noqa: E402
from agent.engine import Engine  # noqa: E402
from agent.messages import Measurement  # noqa: E402

HALF = 10.0  # mm: the square is [-10, 10]^2
SETUP = {"square_mm": 2 * HALF, "velocity_mm_s": 5.0, "overhead_s": 0.5,
         "exposure_s": 0.5, "i0_cps": 1e6, "det_cps": 2e5, "dark_cps": 5.0}
CHECKPOINTS = (0.2, 0.25, 0.3, 0.33, 0.4, 0.5, 0.6, 0.75, 1.0)  # fractions of grid beamtime
RESULTS = Path(__file__).parent / "results" / "map_quality.json"
#: the agent's model and acquisition settings under test (main() fills it)
AGENT_CONFIG: dict = {}


def synthetic(seed: int, n_peaks: int, width: tuple[float, float], background: float = 0.02):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-8, 8, (n_peaks, 2))
    s = rng.uniform(*width, n_peaks)
    h = rng.uniform(0.4, 1.0, n_peaks)

    def f(x, y):
        out = np.full(np.broadcast(x, y).shape, background)
        for (cx, cy), si, hi in zip(c, s, h, strict=True):
            out += hi * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * si * si))
        return out
    return f


def functions(seed: int, quick: bool) -> dict:
    from sim.samples import make_sample

    def sample(name):
        s = make_sample(name, seed=seed)
        return lambda x, y: np.asarray(s.signal(x, y), float)
    names = ("particles", "domains", "phase_boundary")
    fs = {f"sim_{n}": sample(n) for n in names}
    fs["peaks6_w0.6-1.5"] = synthetic(100 + seed, 6, (0.6, 1.5))
    fs["peaks10_w0.4-1.0"] = synthetic(200 + seed, 10, (0.4, 1.0))
    if quick:
        fs = {k: fs[k] for k in ("sim_particles", "sim_domains", "peaks6_w0.6-1.5")}
    return fs


def config(n_max: int, overrides: dict | None = None, agent: bool = True):
    """The engine config: the agent's (AGENT_CONFIG applied) or the engine's defaults."""
    coord = {"low": -HALF, "high": HALF, "units": "mm", "velocity": SETUP["velocity_mm_s"]}
    base = {"coordinates": [{"name": "x", **coord}, {"name": "y", **coord}], "value": "det",
            "stop": {"max_points": n_max}, "overhead_s": SETUP["overhead_s"],
            "training": {"background": False}, "seed": 0}
    # the agent's settings, then the overrides; a dict section is merged into the one before
    # (the agent's training settings keep the benchmark's foreground training)
    for k, v in [*(AGENT_CONFIG.items() if agent else ()), *(overrides or {}).items()]:
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return make_engine_config(base)


def beamtime(path: np.ndarray) -> np.ndarray:
    """Cumulative beamtime (s) after each point of ``path`` (n, 2), starting at its first."""
    moves = np.r_[0.0, np.max(np.abs(np.diff(path, axis=0)), axis=1) / SETUP["velocity_mm_s"]]
    return np.cumsum(moves + SETUP["overhead_s"])


def counts(f, pts: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Values (n,) and counting variances (n,) at ``pts`` (n, 2) mm."""
    t, s = SETUP["exposure_s"], SETUP
    i0 = rng.poisson(s["i0_cps"] * t + s["dark_cps"] * t, len(pts)).astype(float)
    det = rng.poisson(s["det_cps"] * t * f(pts[:, 0], pts[:, 1]) + s["dark_cps"] * t)
    scale = s["i0_cps"] / s["det_cps"]
    value = det / i0 * scale
    var = scale ** 2 * (np.maximum(det, 1.0) / i0 ** 2 + det ** 2 / i0 ** 3)
    return value, var


def measure(f, pts: np.ndarray, rng, seq0: int = 0) -> list[Measurement]:
    y, var = counts(f, pts, rng)
    return [Measurement(run_uid="bench", seq=seq0 + i, positions={"x": p[0], "y": p[1]},
                        values={"det": float(v)}, variances={"det": float(w)})
            for i, (p, v, w) in enumerate(zip(pts, y, var, strict=True))]


def gp_rmse(ms: list[Measurement], truth, agent: bool = True) -> float:
    """RMSE of the posterior mean after training on all of ``ms`` (the final-model procedure)
    with the agent's engine config, or with the engine's defaults (``agent=False``)."""
    gx, gy, z = truth
    eng = Engine.from_measurements(config(len(ms) + 1, agent=agent), ms)
    eng.wait_for_training()
    mu, _ = eng.posterior(np.column_stack([gx.ravel(), gy.ravel()]))
    eng.close()
    return float(np.sqrt(np.mean((mu - z.ravel()) ** 2)))


def bilinear_rmse(n: int, ms: list[Measurement], truth) -> float:
    """RMSE of bilinear interpolation of an n x n serpentine raster's values."""
    gx, gy, z = truth
    ax = np.linspace(-HALF, HALF, n)
    vals = np.empty((n, n))
    for m in ms:
        i = int(round((m.positions["y"] + HALF) / (2 * HALF) * (n - 1)))
        j = int(round((m.positions["x"] + HALF) / (2 * HALF) * (n - 1)))
        vals[i, j] = m.values["det"]
    est = RegularGridInterpolator((ax, ax), vals)(np.column_stack([gy.ravel(), gx.ravel()]))
    return float(np.sqrt(np.mean((est - z.ravel()) ** 2)))


def serpentine(n: int) -> np.ndarray:
    xs = np.linspace(-HALF, HALF, n)
    rows = [np.column_stack([xs if i % 2 == 0 else xs[::-1], np.full(n, y)])
            for i, y in enumerate(np.linspace(-HALF, HALF, n))]
    return np.vstack(rows)


def random_path(n: int, rng) -> np.ndarray:
    pts = rng.uniform(-HALF, HALF, (n, 2))
    order, left, here = [], list(range(n)), np.array([-HALF, -HALF])
    while left:  # nearest-neighbour order: a fair, travel-aware random baseline
        i = left.pop(int(np.argmin(np.max(np.abs(pts[left] - here), axis=1))))
        order.append(i)
        here = pts[i]
    return pts[order]


def grid_reference(f, n: int, truth, rng) -> dict:
    path = serpentine(n)
    ms = measure(f, path, rng)
    r = {"n_points": n * n, "beamtime_s": float(beamtime(path)[-1]),
         "rmse_bilinear": bilinear_rmse(n, ms, truth), "rmse_gp_plain": gp_rmse(
             ms, truth, agent=False), "rmse_gp_agent_model": gp_rmse(ms, truth)}
    r["rmse"] = min(r["rmse_bilinear"], r["rmse_gp_plain"], r["rmse_gp_agent_model"])
    return r


def run_agent(f, truth, T: float, rng, batch: int = 1) -> tuple[list[dict], list[float]]:
    """The agent asks ``batch`` points at a time (travel-ordered) from where the motors are,
    and they are measured in that order, until beamtime T."""
    eng = Engine(config(100_000))
    v, oh = SETUP["velocity_mm_s"], SETUP["overhead_s"]
    pos, t, seq, curve, ask_ms = None, 0.0, 0, [], []
    for frac in CHECKPOINTS:
        while t < frac * T:
            t0 = time.perf_counter()
            points = eng.ask(batch, current_position=pos).points
            ask_ms.append(1e3 * (time.perf_counter() - t0))
            for p in points:
                xy = np.array([p["x"], p["y"]])
                t += oh + (0.0 if pos is None else
                           max(abs(xy[0] - pos["x"]), abs(xy[1] - pos["y"])) / v)
                eng.tell(measure(f, xy[None, :], rng, seq)[0])
                seq, pos = seq + 1, p
        eng.wait_for_training()
        curve.append({"fraction": frac, "beamtime_s": t, "n_points": seq,
                      "rmse": gp_rmse(eng.measurements, truth)})
    eng.close()
    return curve, ask_ms


def one(name: str, f, seed: int, grid_n: int, g, batch: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(g, g)
    truth = (gx, gy, f(gx, gy))
    ref = grid_reference(f, grid_n, truth, rng)
    T = ref["beamtime_s"]
    path = random_path(int(T / (SETUP["overhead_s"] + 0.25)), rng)
    path = path[beamtime(path) <= T]
    rand = {"n_points": len(path), "rmse": gp_rmse(measure(f, path, rng), truth)}
    curve, ask_ms = run_agent(f, truth, T, rng, batch)
    reach = next((c["fraction"] for c in curve if c["rmse"] <= ref["rmse"]), None)
    return {"function": name, "seed": seed, "grid": ref, "random_at_T": rand, "agent": curve,
            "rmse_ratio_at_equal_beamtime": curve[-1]["rmse"] / ref["rmse"],
            "rmse_ratio_at_half_beamtime": next(c for c in curve if c["fraction"] == 0.5)[
                "rmse"] / ref["rmse"],
            "fraction_of_grid_beamtime_to_reach_grid_rmse": reach,
            "agent_ask_ms_p50": float(np.median(ask_ms)),
            "agent_ask_ms_p95": float(np.percentile(ask_ms, 95))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three functions, one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--grid-n", type=int, default=20, help="the raster is n x n")
    ap.add_argument("--functions", nargs="+", help="subset of function names")
    ap.add_argument("--agent-config", type=Path, default=SHIPPED,
                    help="the agent YAML whose model and acquisition settings are tested")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="engine config override for the agent")
    ap.add_argument("--batch", type=int, default=1, help="points per ask (batch-then-route)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    AGENT_CONFIG.update(model_settings(args.agent_config))
    for item in args.set:
        k, _, v = item.partition("=")
        AGENT_CONFIG[k] = json.loads(v)
    seeds = args.seeds[:1] if args.quick else args.seeds
    g = np.linspace(-HALF, HALF, 101)
    results, t_start = [], time.perf_counter()
    for seed in seeds:
        for name, f in functions(seed, args.quick).items():
            if args.functions and name not in args.functions:
                continue
            r = one(name, f, seed, args.grid_n, g, args.batch)
            results.append(r)
            ref, c = r["grid"], r["agent"]
            reach = r["fraction_of_grid_beamtime_to_reach_grid_rmse"]
            print(f"{name:18s} s{seed} grid {args.grid_n}^2 T={ref['beamtime_s']:.0f}s "
                  f"rmse={ref['rmse']:.4f} (bilin {ref['rmse_bilinear']:.4f} gp "
                  f"{ref['rmse_gp_plain']:.4f}/{ref['rmse_gp_agent_model']:.4f}) | agent@T "
                  f"{c[-1]['rmse']:.4f} ({c[-1]['n_points']} pts) ratio@T="
                  f"{r['rmse_ratio_at_equal_beamtime']:.2f} @T/2="
                  f"{r['rmse_ratio_at_half_beamtime']:.2f} | random@T "
                  f"{r['random_at_T']['rmse']:.4f} | reach {reach} | "
                  f"ask p95 {r['agent_ask_ms_p95']:.0f} ms", flush=True)
    reached = [r["fraction_of_grid_beamtime_to_reach_grid_rmse"] for r in results]
    summary = {"n_runs": len(results),
               "n_reached_within_half": sum(x is not None and x <= 0.5 for x in reached),
               "n_reached_within_third": sum(x is not None and x <= 0.33 for x in reached),
               "median_rmse_ratio_at_equal_beamtime": float(np.median(
                   [r["rmse_ratio_at_equal_beamtime"] for r in results])),
               "runtime_s": time.perf_counter() - t_start}
    print(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "setup": {**SETUP, "grid_n": args.grid_n, "checkpoints": CHECKPOINTS,
                  "batch": args.batch,
                  "agent_config_overrides": AGENT_CONFIG,
                  "agent_config": config(1).to_jsonable()},
        "summary": summary, "results": results}, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
