"""Decision latency: time from a measurement's arrival (Engine.tell) to the next proposal
(Engine.ask returns), at N already-measured points, in 2-D and 4-D; then the time of a
batch ask of 5 points (the slowest of three).

Training is scheduled every 10 points (``training.schedule="every"``), so background training
runs during most cycles; each cycle records whether a training job was running, and the
latency with and without training is reported separately ("did training delay a proposal").

    /work/venv/bin/python benchmarks/bench_decision_latency.py [--with-2000] [--cycles 40]
        [--agent-config configs/agent.yaml]   # model and acquisition settings (default: shipped)
        [--acquisition mapping]               # override the acquisition function
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from agent_settings import SHIPPED, model_settings  # noqa: E402

from agent.config import make_engine_config  # noqa: E402
from agent.engine import Engine  # noqa: E402
from agent.messages import Measurement  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "decision_latency.json"
BATCH = 5  # points per batch ask, after the single-point cycles


def truth(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.sum((x - 0.3) ** 2, axis=1) / 0.02) + 0.5 * np.sin(6 * x[:, 0])


def measurement(x: np.ndarray, seq: int, rng) -> Measurement:
    names = [f"c{i}" for i in range(len(x))]
    v = float(truth(x[None])[0] + rng.normal(0, 0.01))
    return Measurement(run_uid="lat", seq=seq, positions=dict(zip(names, map(float, x),
                                                                  strict=True)),
                       values={"v": v}, variances={"v": 1e-4})


def one(n: int, d: int, cycles: int, settings: dict) -> dict:
    rng = np.random.default_rng(n + d)
    config = make_engine_config({
        "coordinates": [{"name": f"c{i}", "low": 0, "high": 1, "velocity": 1.0}
                        for i in range(d)],
        "value": "v", "stop": {"max_points": 100_000}, "overhead_s": 0.5,
        **settings, "training": {**settings.get("training", {}), "schedule": "every",
                                 "first_at": 10, "every": 10}})
    x0 = rng.random((n, d))
    eng = Engine.from_measurements(config, [measurement(x, i, rng) for i, x in enumerate(x0)])
    eng.wait_for_training(600)  # start from trained hyperparameters
    prop = eng.ask(1)
    lat, busy = [], []
    for k in range(cycles):
        x = np.array([prop.points[0][f"c{i}"] for i in range(d)])
        m = measurement(x, n + k, rng)
        t0 = time.perf_counter()
        eng.tell(m)
        training = eng.status()["training"]["running"]
        prop = eng.ask(1, current_position=prop.points[0])
        lat.append(time.perf_counter() - t0)
        busy.append(training)
    batch_ms = []
    for _ in range(3):  # a diverse, travel-ordered batch (gpCAM's own batch path: 186 s)
        t0 = time.perf_counter()
        eng.ask(BATCH, current_position=prop.points[0])
        batch_ms.append(1e3 * (time.perf_counter() - t0))
    st = eng.status()["training"]
    # a run at N=2000 in 4-D ended in a segfault at interpreter exit, with a training job of
    # minutes still running in its daemon thread: let the job end before the next row
    eng.wait_for_training(900)
    eng.close()
    lat_ms, busy = 1e3 * np.array(lat), np.array(busy)

    def pct(a, q):
        return None if len(a) == 0 else float(np.percentile(a, q))
    return {"n": n, "d": d, "cycles": cycles, "p50_ms": pct(lat_ms, 50), "p95_ms": pct(lat_ms, 95),
            "max_ms": float(lat_ms.max()),
            "p95_ms_training_running": pct(lat_ms[busy], 95),
            "p95_ms_training_idle": pct(lat_ms[~busy], 95),
            "cycles_with_training_running": int(busy.sum()),
            "training_runs": st["n_trainings"], "last_training_s": st["last_duration_s"],
            f"batch{BATCH}_ms_max": max(batch_ms),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--with-2000", action="store_true", help="also N=2000 (slow to set up)")
    ap.add_argument("--cycles", type=int, default=40)
    ap.add_argument("--agent-config", type=Path, default=SHIPPED,
                    help="take the model and acquisition settings from this agent YAML")
    ap.add_argument("--acquisition", help="override the agent YAML's acquisition function")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--ns", type=int, nargs="+", default=None, help="override the N list")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    ns = args.ns or [50, 200, 500, 1000] + ([2000] if args.with_2000 else [])
    settings = model_settings(args.agent_config)
    if args.acquisition:
        settings["acquisition"] = args.acquisition
    print(f"settings: {settings}")
    rows = []
    print(f"{'d':>2} {'N':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'p95 busy':>8} "
          f"{'p95 idle':>8} {'busy':>5} {'RSS MB':>7} {'batch ms':>8}")
    for d in args.dims:
        for n in ns:
            r = one(n, d, args.cycles, settings)
            rows.append(r)

            def fmt(v):
                return "   -   " if v is None else f"{v:7.1f}"
            print(f"{d:>2} {n:>5} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} {r['max_ms']:7.1f} "
                  f"{fmt(r['p95_ms_training_running']):>8} {fmt(r['p95_ms_training_idle']):>8} "
                  f"{r['cycles_with_training_running']:>5} {r['peak_rss_mb']:7.0f} "
                  f"{r[f'batch{BATCH}_ms_max']:8.0f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
