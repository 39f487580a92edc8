"""Map quality at equal beamtime, motor travel included: agent vs serpentine raster vs random.

Beamtime of a point = per-point overhead (exposure + settling) + the move from the previous
point, with both motors moving in parallel at ``velocity`` (time = max |dx_i| / v_i). Every
method's map is the posterior mean of a GP (the same Engine, hyperparameters trained on that
method's data) evaluated on a 101 x 101 truth grid; RMSE is against the noise-free truth.

Ratio reported: beamtime the agent needed to reach the final RMSE of the raster grid, divided
by the grid's beamtime (target <= 0.5, goal <= 0.33). Functions: sim.samples when importable,
plus two synthetic narrow-peak maps defined here.

    /work/venv/bin/python benchmarks/bench_map_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from agent.config import make_engine_config  # noqa: E402
from agent.engine import Engine  # noqa: E402
from agent.messages import Measurement  # noqa: E402

HALF = 10.0  # mm: the square is [-10, 10]^2
VELOCITY = 5.0  # mm/s
OVERHEAD_S = 0.5
NOISE_SD = 0.01
RESULTS = Path(__file__).parent / "results" / "map_quality.json"


def synthetic(seed: int, n_peaks: int, width: tuple[float, float]):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-8, 8, (n_peaks, 2))
    s = rng.uniform(*width, n_peaks)
    h = rng.uniform(0.4, 1.0, n_peaks)

    def f(x, y):
        out = np.zeros(np.broadcast(x, y).shape)
        for (cx, cy), si, hi in zip(c, s, h, strict=True):
            out += hi * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * si * si))
        return out
    return f


def _signal(sample):
    return lambda x, y: np.asarray(sample.signal(x, y), float)


def functions() -> dict:
    fs = {"peaks6_w0.6-1.5": synthetic(1, 6, (0.6, 1.5)),
          "peaks10_w0.4-1.0": synthetic(2, 10, (0.4, 1.0))}
    try:
        from sim.samples import make_sample
        for name in ("particles", "domains", "phase_boundary"):
            fs[f"sim_{name}"] = _signal(make_sample(name, seed=0))
    except ImportError as exc:
        print(f"sim.samples not importable ({exc}); synthetic functions only")
    return fs


def config(n_max: int, acquisition: str = "mapping", background: bool = False):
    coord = {"low": -HALF, "high": HALF, "units": "mm", "velocity": VELOCITY}
    return make_engine_config({
        "coordinates": [{"name": "x", **coord}, {"name": "y", **coord}], "value": "det",
        "acquisition": acquisition, "stop": {"max_points": n_max}, "overhead_s": OVERHEAD_S,
        "training": {"background": background}, "seed": 0})


def beamtime(path: np.ndarray) -> np.ndarray:
    """Cumulative beamtime (s) after each point of ``path`` (n, 2), starting at its first."""
    moves = np.r_[0.0, np.max(np.abs(np.diff(path, axis=0)), axis=1) / VELOCITY]
    return np.cumsum(moves + OVERHEAD_S)


def measure(f, pts: np.ndarray, rng, seq0: int = 0) -> list[Measurement]:
    y = f(pts[:, 0], pts[:, 1]) + rng.normal(0, NOISE_SD, len(pts))
    return [Measurement(run_uid="bench", seq=seq0 + i, positions={"x": p[0], "y": p[1]},
                        values={"det": float(v)}, variances={"det": NOISE_SD ** 2})
            for i, (p, v) in enumerate(zip(pts, y, strict=True))]


def rmse(engine: Engine, truth) -> float:
    gx, gy, z = truth
    mu, _ = engine.posterior(np.column_stack([gx.ravel(), gy.ravel()]))
    return float(np.sqrt(np.mean((mu - z.ravel()) ** 2)))


def fitted_rmse(f, pts, truth, rng) -> float:
    eng = Engine.from_measurements(config(len(pts) + 1), measure(f, pts, rng))
    eng.wait_for_training()
    r = rmse(eng, truth)
    eng.close()
    return r


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


def run_agent(f, truth, t_budget: float, checkpoints: np.ndarray, rng, acquisition: str):
    eng = Engine(config(100_000, acquisition))
    pos, t, curve, seq = None, 0.0, [], 0
    ask_ms = []
    for tc in checkpoints:
        while t < tc:
            t0 = time.perf_counter()
            p = eng.ask(1, current_position=pos).points[0]
            ask_ms.append(1e3 * (time.perf_counter() - t0))
            xy = np.array([p["x"], p["y"]])
            t += OVERHEAD_S + (0.0 if pos is None else
                               max(abs(xy[0] - pos["x"]), abs(xy[1] - pos["y"])) / VELOCITY)
            eng.tell(measure(f, xy[None, :], rng, seq)[0])
            seq, pos = seq + 1, p
        eng.wait_for_training()
        curve.append({"beamtime_s": t, "n_points": seq, "rmse": rmse(eng, truth)})
    eng.close()
    return curve, float(np.median(ask_ms)), float(np.percentile(ask_ms, 95))


def time_to_reach(curve: list[dict], target: float) -> float | None:
    for c in curve:
        if c["rmse"] <= target:
            return c["beamtime_s"]
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="two functions, 15x15 grid")
    ap.add_argument("--grid-n", type=int, default=20, help="final raster is n x n")
    ap.add_argument("--acquisition", default="mapping")
    args = ap.parse_args()
    g = np.linspace(-HALF, HALF, 101)
    gx, gy = np.meshgrid(g, g)
    fs = functions()
    if args.quick:
        fs = dict(list(fs.items())[:2])
        args.grid_n = 15
    results = []
    for name, f in fs.items():
        rng = np.random.default_rng(0)
        truth = (gx, gy, f(gx, gy))
        grid = {}
        for n in sorted({max(args.grid_n // 2, 5), (3 * args.grid_n) // 4, args.grid_n}):
            path = serpentine(n)
            grid[n] = {"n_points": n * n, "beamtime_s": float(beamtime(path)[-1]),
                       "rmse": fitted_rmse(f, path, truth, rng)}
        final = grid[args.grid_n]
        T = final["beamtime_s"]
        rand = []
        for frac in (0.5, 1.0):
            n = int(frac * args.grid_n ** 2)
            path = random_path(n, rng)
            rand.append({"n_points": n, "beamtime_s": float(beamtime(path)[-1]),
                         "rmse": fitted_rmse(f, path, truth, rng)})
        checkpoints = T * np.linspace(0.1, 1.0, 10)
        curve, p50, p95 = run_agent(f, truth, T, checkpoints, rng, args.acquisition)
        t_reach = time_to_reach(curve, final["rmse"])
        half = min(curve, key=lambda c: abs(c["beamtime_s"] - T / 2))
        r = {"function": name, "grid": list(grid.values()), "random": rand, "agent": curve,
             "grid_final_rmse": final["rmse"], "grid_beamtime_s": T,
             "agent_time_to_grid_rmse_s": t_reach,
             "beamtime_ratio": None if t_reach is None else t_reach / T,
             "rmse_ratio_at_equal_beamtime": curve[-1]["rmse"] / final["rmse"],
             "rmse_ratio_at_half_beamtime": half["rmse"] / final["rmse"],
             "agent_ask_ms_p50": p50, "agent_ask_ms_p95": p95}
        results.append(r)
        ratio = "not reached" if t_reach is None else f"{t_reach / T:.2f}"
        print(f"{name:24s} grid {args.grid_n}x{args.grid_n}: T={T:.0f}s rmse={final['rmse']:.4f}"
              f" | agent at T: {curve[-1]['rmse']:.4f} ({curve[-1]['n_points']} pts)"
              f" ratio={r['rmse_ratio_at_equal_beamtime']:.2f}"
              f" | random at T: {rand[-1]['rmse']:.4f} ({rand[-1]['beamtime_s']:.0f}s)"
              f" | agent reaches grid rmse at {ratio} of T", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "setup": {"square_mm": 2 * HALF, "velocity_mm_s": VELOCITY, "overhead_s": OVERHEAD_S,
                  "noise_sd": NOISE_SD, "grid_n": args.grid_n, "acquisition": args.acquisition},
        "results": results}, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
