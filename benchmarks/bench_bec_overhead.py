"""What BestEffortCallback costs a gp_scan, against LiveTable (issue 12).

A scientist's IPython session subscribes bluesky's BestEffortCallback (BEC): a table and live
plots from the start document's hints. gp_scan's ``proposals`` stream has empty hints and its
start document carries ``extents``, so BEC should plot only the detector against the motors.
This measures the wall time of a 20-point gp_scan with BEC subscribed against the same with a
LiveTable of the same fields, alternating (``--pairs`` times) on one running stack; also BEC
with ``fig_factory=plt.figure`` (BEC's default figure uses constrained layout, which the
profile showed to be about half of each redraw).
Matplotlib runs with the Agg backend, which renders on every ``draw_idle`` as a GUI backend's
event loop would. Target: BEC / LiveTable <= 1.2.

Runs the real stack: the simulated beamline (caproto, Channel Access on loopback), the agent
service (subprocess, ZeroMQ), ophyd-async devices.

    python benchmarks/bench_bec_overhead.py [--points 20] [--pairs 3] [--exposure-s 0.1]
        [--setup fast|readme]

``--setup fast`` (default): the sample stage at 10 mm/s over +-5 mm (bench_loop_efficiency's
setup), so little time is spent moving; ``readme``: the shipped configs as the README's
IPython session uses them (5 mm/s over +-10 mm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bench_loop_efficiency  # noqa: E402
from stack import sim_and_agent  # noqa: E402


def readme_configs(folder: Path) -> tuple[Path, Path]:
    """The shipped beamline and agent YAMLs, the agent's point budget raised for many runs."""
    import yaml

    agent = yaml.safe_load((REPO / "configs/agent.yaml").read_text())
    agent["engine"]["stop"] = {"max_points": 10_000}
    (folder / "agent.yaml").write_text(yaml.safe_dump(agent))
    return REPO / "configs/beamline.yaml", folder / "agent.yaml"


def one_run(RE, bl, addresses, callback, n: int, docs: list, half_width: float
            ) -> tuple[float, dict]:
    """Wall time (s) of an n-point gp_scan with ``callback`` subscribed, and its start doc;
    ``docs`` receives the run's documents."""
    import bluesky.plan_stubs as bps

    from agent.client import AgentClient
    from agent.reducers import ScalarReducer
    from plans.gp_scan import gp_scan

    x, y = bl.sample_stage.x, bl.sample_stage.y
    RE(bps.mv(x, 0.0, y, 0.0))
    client = AgentClient(addresses["request"], timeout_s=30)
    reducer = ScalarReducer(positions={"x": "sample_x", "y": "sample_y"},
                            address=addresses["measurement"])
    bounds = (-half_width, half_width)
    start: dict = {}
    docs.clear()

    def keep_start(name, doc):
        docs.append({"name": name, "doc": doc})
        if name == "start":
            start.update(doc)

    t0 = time.monotonic()
    try:
        RE(gp_scan([bl.scaler], x, bounds, y, bounds, agent=client, reducer=reducer,
                   max_points=n), [callback, keep_start])
    finally:
        reducer.close()
        client.close()
    return time.monotonic() - t0, start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--exposure-s", type=float, default=0.1)
    parser.add_argument("--setup", choices=("fast", "readme"), default="fast")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--documents", type=Path, help="write the last BEC run's documents "
                        "here (JSON lines), to replay into a profiler")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"live_table": [], "bec": [], "bec_plain_figure": []}
    plots: list[int] = []
    docs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.setup == "fast":
            beamline_yaml, agent_yaml = bench_loop_efficiency.write_configs(folder)
            half = bench_loop_efficiency.HALF_WIDTH
        else:
            (beamline_yaml, agent_yaml), half = readme_configs(folder), 10.0
        with sim_and_agent(beamline_yaml, agent_yaml, folder) as (RE, bl, addresses):
            import bluesky.plan_stubs as bps
            import matplotlib.pyplot as plt
            from bluesky.callbacks import LiveTable
            from bluesky.callbacks.best_effort import BestEffortCallback

            RE(bps.mv(bl.scaler.preset_time, args.exposure_s))
            fields = ["sample_x", "sample_y", *bl.scaler.hints["fields"]]
            one_run(RE, bl, addresses, LiveTable(fields), 3, docs, half)  # warm-up
            for i in range(args.pairs):
                wall, _ = one_run(RE, bl, addresses, LiveTable(fields), args.points, docs, half)
                walls["live_table"].append(wall)
                for variant, factory in (("bec", None), ("bec_plain_figure", plt.figure)):
                    plt.close("all")
                    bec = BestEffortCallback(fig_factory=factory)
                    wall, start = one_run(RE, bl, addresses, bec, args.points, docs, half)
                    walls[variant].append(wall)
                    plots.append(len(plt.get_fignums()))
                plt.close("all")
                print(f"pair {i}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()),
                      flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    result = {"points": args.points, "exposure_s": args.exposure_s, "pairs": args.pairs,
              "setup": args.setup, "half_width_mm": half,
              "wall_s": walls, "median_wall_s": med,
              "bec_over_live_table": med["bec"] / med["live_table"],
              "bec_plain_figure_over_live_table": med["bec_plain_figure"] / med["live_table"],
              "bec_figures": plots, "start_extents": start.get("extents"), "target": 1.2}
    print("median per run: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items())
          + f"; BEC / LiveTable {result['bec_over_live_table']:.2f}, with a plain figure "
          f"{result['bec_plain_figure_over_live_table']:.2f} (target <= 1.2); "
          f"extents {start.get('extents')}")
    args.output.mkdir(parents=True, exist_ok=True)
    if args.documents:
        args.documents.write_text("".join(json.dumps(d, default=str) + "\n" for d in docs))
    out = args.output / f"bec_overhead_{args.setup}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
