"""Loop efficiency of gp_scan against bluesky's list_scan over the same points.

Efficiency = (motion + exposure time) / wall time per point: the share of beamtime spent
moving and counting. gp_scan's agent thinks while the current point is measured, so its
efficiency should match list_scan's, which has nothing to think about. Target: >= 95 %.

Runs the real stack: the simulated beamline (caproto, Channel Access on loopback), the agent
service (subprocess, ZeroMQ), ophyd-async devices.

    python benchmarks/bench_loop_efficiency.py [--points 30] [--exposures 0.1 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stack import sim_and_agent  # noqa: E402

VELOCITY = 10.0  # mm/s
HALF_WIDTH = 5.0  # mm


def run_pair(RE, bl, addresses, exposure_s: float, n: int) -> dict:
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    import numpy as np

    from agent.client import AgentClient
    from agent.reducers import ScalarReducer
    from plans.gp_scan import gp_scan
    from plans.scoring import motion_time_s

    x, y = bl.sample_stage.x, bl.sample_stage.y
    RE(bps.mv(bl.scaler.preset_time, exposure_s, x, 0.0, y, 0.0))
    docs: list = []
    client = AgentClient(addresses["request"], timeout_s=30)
    reducer = ScalarReducer(positions={"x": "sample_x", "y": "sample_y"},
                            address=addresses["measurement"])
    bounds = (-HALF_WIDTH, HALF_WIDTH)
    t0 = time.monotonic()
    RE(gp_scan([bl.scaler], x, bounds, y, bounds, agent=client, reducer=reducer, max_points=n),
       lambda name, doc: docs.append((name, doc)))
    gp_wall = time.monotonic() - t0
    reducer.close()
    client.close()
    primary = {d["uid"] for name, d in docs if name == "descriptor" and d["name"] == "primary"}
    pts = np.array([[d["data"]["sample_x"], d["data"]["sample_y"]] for name, d in docs
                    if name == "event" and d["descriptor"] in primary])
    RE(bps.mv(x, 0.0, y, 0.0))
    t0 = time.monotonic()
    RE(bp.list_scan([bl.scaler], x, list(pts[:, 0]), y, list(pts[:, 1])))
    list_wall = time.monotonic() - t0
    start = np.zeros((1, 2))
    # the simulated record ramps to VELO in ACCL s and brakes as long (sim.motor_motion)
    accl = RE(bps.rd(x.acceleration_time)).plan_result  # sample_y has the same ACCL
    busy = motion_time_s(np.vstack([start, pts]), VELOCITY, accl) + n * exposure_s
    gp_eff, list_eff = busy / gp_wall, busy / list_wall
    return {"exposure_s": exposure_s, "points": n, "motion_plus_exposure_s": busy,
            "gp_scan_wall_s": gp_wall, "list_scan_wall_s": list_wall,
            "gp_scan_efficiency": gp_eff, "list_scan_efficiency": list_eff,
            "ratio": gp_eff / list_eff}


def write_configs(folder: Path) -> tuple[Path, Path]:
    import yaml

    beamline = yaml.safe_load((REPO / "configs/beamline.yaml").read_text())
    for element in beamline["beamline"]["elements"]:
        for motor in element.get("motors", [element]):
            if motor.get("name") in ("sample_x", "sample_y"):
                motor["velocity"] = VELOCITY
    agent = yaml.safe_load((REPO / "configs/agent.yaml").read_text())
    for c in agent["engine"]["coordinates"]:
        c.update(low=-HALF_WIDTH, high=HALF_WIDTH, velocity=VELOCITY)
    agent["engine"]["stop"] = {"max_points": 10_000}
    paths = folder / "beamline.yaml", folder / "agent.yaml"
    for path, data in zip(paths, (beamline, agent), strict=True):
        path.write_text(yaml.safe_dump(data))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--exposures", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        beamline_yaml, agent_yaml = write_configs(folder)
        with sim_and_agent(beamline_yaml, agent_yaml, folder) as (RE, bl, addresses):
            for exposure in args.exposures:
                r = run_pair(RE, bl, addresses, exposure, args.points)
                results.append(r)
                print(f"exposure {exposure:4.2f} s, {r['points']} points: efficiency gp_scan "
                      f"{r['gp_scan_efficiency']:.1%}, list_scan {r['list_scan_efficiency']:.1%}"
                      f", ratio {r['ratio']:.1%}", flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "loop_efficiency.json"
    out.write_text(json.dumps({"velocity_mm_s": VELOCITY, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
