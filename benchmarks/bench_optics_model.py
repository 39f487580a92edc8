"""Cost and shape of the in-process optics model (sim.optics), for both variants.

Prints and writes ``results/optics_model.json``:
- cost per ``objective`` call, per point of ``objective_array`` (n = 1000), per ``beam``,
  per rendered frame + NDStats;
- the optimum J* and its positions (``scoring.find_optimum``) and the search time;
- the 1-D FWHM of J around the optimum per DOF, as % of the DOF's range;
- one pass of coordinate-wise 1-D scans (21 points per DOF over its range) from +-20 %
  starts, 10 seeds: J/J* reached.

    .venv/bin/python benchmarks/bench_optics_model.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sim.optics import OpticsModel, default_bounds, hard_params
from sim.optics.camera import nd_stats, render
from sim.optics.scoring import find_optimum, line_scan_pass, misaligned_start

RESULTS = Path(__file__).parent / "results" / "optics_model.json"


def per_call_us(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def fwhm_percent(model: OpticsModel, pos: dict, j_star: float, bounds: dict) -> dict:
    out = {}
    for i, key in enumerate(model.dofs):
        lo, hi = bounds[key]
        grid = np.linspace(lo, hi, 4001)
        pts = np.tile(model.vector(pos), (grid.size, 1))
        pts[:, i] = grid
        above = grid[model.objective_array(pts) >= j_star / 2]
        out[key] = round(100 * (above.max() - above.min()) / (hi - lo), 1)
    return out


def variant(hard: bool) -> dict:
    model, bounds = OpticsModel(hard_params() if hard else None), default_bounds(hard)
    t = time.perf_counter()
    pos, j_star = find_optimum(model, bounds)
    search_s = time.perf_counter() - t
    x = model.vector(pos)
    many = np.tile(x, (1000, 1))
    cam, rng = model.params.camera, np.random.default_rng(0)
    b = model.beam(pos)
    ratios = []
    for seed in range(10):
        start = misaligned_start(model, bounds, pos, 0.2, np.random.default_rng(seed))
        ratios.append(model.objective(line_scan_pass(model, bounds, start)[0]) / j_star)
    return {
        "dofs": list(model.dofs),
        "objective_us": per_call_us(lambda: model.objective(pos), 2000),
        "objective_array_us_per_point_n1000": per_call_us(
            lambda: model.objective_array(many), 20) / 1000,
        "beam_us": per_call_us(lambda: model.beam(pos), 2000),
        "render_plus_nd_stats_ms": per_call_us(
            lambda: nd_stats(render(b, cam, 0.01, rng), 5.0), 50) / 1000,
        "find_optimum_s": search_s,
        "j_star_counts_per_s_um2": j_star,
        "optimum": pos,
        "beam_at_optimum": b.__dict__,
        "fwhm_percent_of_range": fwhm_percent(model, pos, j_star, bounds),
        "one_pass_line_scans_j_over_j_star": [round(r, 3) for r in ratios],
        "one_pass_below_0_95": sum(r < 0.95 for r in ratios),
    }


def main() -> None:
    results = {"standard": variant(False), "hard": variant(True)}
    for name, r in results.items():
        print(f"== {name}: {len(r['dofs'])} DOFs, J* = {r['j_star_counts_per_s_um2']:.4g} "
              f"counts/s/um^2 (search {r['find_optimum_s']:.1f} s)")
        print(f"   objective {r['objective_us']:.0f} us, objective_array "
              f"{r['objective_array_us_per_point_n1000']:.1f} us/point, beam "
              f"{r['beam_us']:.0f} us, render+nd_stats {r['render_plus_nd_stats_ms']:.2f} ms")
        for k in r["dofs"]:
            print(f"   {k:14s} opt {r['optimum'][k]:10.3f}  FWHM "
                  f"{r['fwhm_percent_of_range'][k]:5.1f} % of range")
        print(f"   one pass of 1-D scans: J/J* = {r['one_pass_line_scans_j_over_j_star']} "
              f"({r['one_pass_below_0_95']}/10 below 0.95)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
