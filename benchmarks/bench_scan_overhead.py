"""Per-point overhead of ``bluesky.plans.scan`` with each device flavour, on the simulator.

Starts the simulated beamline (``python -m sim``) on a free loopback port, then for the
ophyd-async and the classic ophyd beamline times:

- ``scan``: ``bp.scan([scaler], sample_x, 0, (N-1)*step, N)`` -- move + trigger + read;
- ``count``: ``bp.count([scaler], N)`` -- trigger + read, no motion.

Overhead per point = wall time per point - exposure (TP) - motion time. Motion time per
step is reported two ways:

- ``motion_sim_ms``: the trapezoid the simulated record moves (``plans.scoring.motion_time_s``:
  ACCL to reach VELO and as long to stop; a step shorter than VELO * ACCL is a triangle).
  Moves advance in ``simulation.tick_s`` ticks, so up to one tick of quantisation remains
  inside the overhead;
- ``motion_record_ms``: step / VELO + ACCL, the usual estimate for a real motor record.

The headline ``overhead_ms`` uses ``motion_sim_ms`` (what actually elapses on this sim).

Usage: ``python benchmarks/bench_scan_overhead.py [--points 50] [--step-mm 0.1]
[--exposure-s 0.001] [--repeats 3]``. Writes ``benchmarks/results/scan_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from plans.processes import ca_client_environment, free_port_pair, simulated_beamline

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "scan_overhead.json"
BEAMLINE = ROOT / "configs" / "beamline.yaml"


def time_plan(RE, plan_factory, repeats: int, n_points: int) -> list[float]:
    """Wall seconds per point of each repeat (a 5-point warm-up run is not timed)."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        RE(plan_factory(n_points))
        out.append((time.perf_counter() - t0) / n_points)
    return out


def bench_flavour(RE, scaler, motor, args) -> dict:
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp

    RE(bps.mv(scaler.preset_time, args.exposure_s))
    RE(bps.mv(motor, 0.0))

    def scan(n):
        return bp.scan([scaler], motor, 0.0, (n - 1) * args.step_mm, n)

    def count(n):
        return bp.count([scaler], n)

    time_plan(RE, scan, 1, 5)
    time_plan(RE, count, 1, 5)
    scan_s = time_plan(RE, scan, args.repeats, args.points)
    count_s = time_plan(RE, count, args.repeats, args.points)
    return {"scan_point_ms": [1e3 * s for s in scan_s],
            "count_point_ms": [1e3 * s for s in count_s]}


def summarise(raw: dict, cfg, args) -> dict:
    import numpy as np

    from plans.scoring import motion_time_s

    m = cfg.motor("sample_x")
    exposure_ms = 1e3 * args.exposure_s
    motion_sim_ms = 1e3 * motion_time_s(np.array([[0.0], [args.step_mm]]), m.velocity,
                                        m.acceleration_s)
    motion_record_ms = motion_sim_ms + 1e3 * m.acceleration_s
    scan_ms = statistics.median(raw["scan_point_ms"])
    count_ms = statistics.median(raw["count_point_ms"])
    return {
        **raw,
        "scan_point_median_ms": round(scan_ms, 2),
        "count_point_median_ms": round(count_ms, 2),
        "motion_sim_ms": round(motion_sim_ms, 2),
        "motion_record_ms": round(motion_record_ms, 2),
        "overhead_ms": round(scan_ms - exposure_ms - motion_sim_ms, 2),
        "overhead_vs_record_motion_ms": round(scan_ms - exposure_ms - motion_record_ms, 2),
        "count_overhead_ms": round(count_ms - exposure_ms, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--step-mm", type=float, default=0.1)
    parser.add_argument("--exposure-s", type=float, default=0.001)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    port = free_port_pair()
    # libca and caproto read these once, at first use: set before importing CA clients.
    os.environ.update(ca_client_environment(port))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from bluesky import RunEngine
    from ophyd_async.plan_stubs import ensure_connected

    from devices import (
        disconnect_channel_access,
        load_beamline_config,
        make_beamline,
        make_ophyd_beamline,
    )

    cfg = load_beamline_config(BEAMLINE)
    with tempfile.TemporaryDirectory() as logs, \
            simulated_beamline(BEAMLINE, port, Path(logs)):
        RE = RunEngine()
        bl = make_beamline(cfg)
        RE(ensure_connected(bl, timeout=20))
        results = {"ophyd_async": bench_flavour(RE, bl.scaler, bl.sample_stage.x, args)}
        obl = make_ophyd_beamline(cfg, timeout_s=10.0)
        results["ophyd_classic_caproto"] = bench_flavour(RE, obl.scaler, obl.sample_stage.x, args)
        disconnect_channel_access()  # before the IOC goes: no libca disconnect noise

    out = {
        "points": args.points, "step_mm": args.step_mm, "exposure_s": args.exposure_s,
        "repeats": args.repeats, "velocity_mm_s": cfg.motor("sample_x").velocity,
        "acceleration_s": cfg.motor("sample_x").acceleration_s,
        # 2 shared cores: figures scale with contention, so record it
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "flavours": {k: summarise(v, cfg, args) for k, v in results.items()},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2))
    for name, r in out["flavours"].items():
        print(f"{name:24s} scan {r['scan_point_median_ms']:6.1f} ms/pt  "
              f"(exposure {1e3 * args.exposure_s:.1f} + motion {r['motion_sim_ms']:.1f} "
              f"+ overhead {r['overhead_ms']:.1f})  count {r['count_point_median_ms']:.1f} ms/pt "
              f"(overhead {r['count_overhead_ms']:.1f})")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
