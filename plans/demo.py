"""``beamagent demo``: an autonomous 2-D map of a hidden sample, end to end, on real parts.

Starts the simulated beamline (caproto IOCs over Channel Access) and the agent service
(gpCAM behind ZeroMQ) as subprocesses, maps the sample with ``gp_scan`` from a RunEngine with
ophyd-async devices, then runs a raster ``grid_scan`` of equal beamtime for comparison. Writes
the documents (bluesky's JSONLinesWriter), a figure and a summary to the output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import yaml
from bluesky.utils import RunEngineInterrupted

from configs import DEFAULT_AGENT, DEFAULT_BEAMLINE
from configs.schema import MotorConfig
from devices import disconnect_channel_access
from plans.processes import agent_service, ca_client_environment, free_port_pair, simulated_beamline

SAMPLES = ("particles", "domains", "phase_boundary")
PLAN_OVERHEAD_S = 0.04  # bluesky scan overhead per point, ophyd-async (bench_scan_overhead)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", choices=SAMPLES, default="particles",
                        help="hidden sample to map")
    parser.add_argument("--points", type=int, default=150, metavar="N",
                        help="point budget of the autonomous map (at least 10)")
    parser.add_argument("--output", type=Path, default=Path("beamagent-output/demo"),
                        metavar="DIR", help="folder for documents, figure and summary")
    parser.add_argument("--exposure-s", type=float, default=0.05, metavar="S",
                        help="count time per point, s")
    parser.add_argument("--velocity-mm-s", type=float, default=20.0, metavar="MM_S",
                        help="sample stage VELO, mm/s")
    parser.add_argument("--seed", type=int, default=0, help="sample geometry and noise seed")
    parser.add_argument("--beamline-config", type=Path, default=DEFAULT_BEAMLINE,
                        metavar="YAML", help="beamline YAML the simulator and devices start "
                        "from (the options above override its sample and velocities)")
    parser.add_argument("--agent-config", type=Path, default=DEFAULT_AGENT, metavar="YAML",
                        help="agent YAML the service starts from (--points and the velocity "
                        "override its stop and travel settings)")


def write_configs(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """The demo's beamline and agent YAMLs, derived from configs/ with the chosen options."""
    beamline = yaml.safe_load(args.beamline_config.read_text())
    stage = [m for element in beamline["beamline"]["elements"] for m in element.get("motors", ())
             if m["name"] in ("sample_x", "sample_y")]
    for motor in stage:
        motor["velocity"] = args.velocity_mm_s
    accl = max(m.get("acceleration_s", MotorConfig.model_fields["acceleration_s"].default)
               for m in stage)
    beamline.setdefault("simulation", {}).update(sample=args.sample, seed=args.seed)
    agent = yaml.safe_load(args.agent_config.read_text())
    for coordinate in agent["engine"]["coordinates"]:
        coordinate["velocity"] = args.velocity_mm_s
    agent["engine"]["stop"] = {"max_points": args.points}
    # per point besides travel at VELO: exposure, one ACCL ramp, the plan's own overhead
    agent["engine"]["overhead_s"] = args.exposure_s + accl + PLAN_OVERHEAD_S
    paths = out / "beamline.yaml", out / "agent.yaml"
    for path, data in zip(paths, (beamline, agent), strict=True):
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return paths


def check_configs(args: argparse.Namespace) -> str | None:
    """One line naming a config file that is missing or invalid, or None if both load."""
    from agent.service_config import load_agent_config
    from configs.errors import config_error_line
    from configs.schema import load_beamline_config

    for path, load in ((args.beamline_config, load_beamline_config),
                       (args.agent_config, load_agent_config)):
        try:
            load(path)
        except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
            return config_error_line(path, exc)
    return None


def prepare_output(out: Path) -> None:
    """Create ``out`` and remove an earlier run's documents, agent state (files and
    folders such as ``agent/run_sessions``), summary and error log: the agent would
    otherwise recover the earlier run's log. Other files are kept."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("documents/*.jsonl"), *out.glob("agent/*"),
                  *out.glob("summary.json"), *out.glob("demo-error.log")]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    (out / "documents").mkdir(exist_ok=True)


def _stop_like_ctrl_c(signum, frame) -> None:
    signal.raise_signal(signal.SIGINT)  # the RunEngine pauses; run() aborts and cleans up


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)  # `kill` stops the demo as Ctrl-C does
    if args.points < 10:
        print(f"--points {args.points}: need at least 10 for a map", file=sys.stderr)
        return 2
    refused = check_configs(args)
    if refused:
        print(f"beamagent demo: {refused}", file=sys.stderr)
        return 2
    out = args.output.resolve()
    prepare_output(out)
    # Library logs (bluesky's "Run aborted" traceback on Ctrl-C, caproto) go to a file;
    # the terminal shows progress, the summary and one line per error.
    logging.basicConfig(filename=out / "demo.log", filemode="w", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    beamline_yaml, agent_yaml = write_configs(args, out)
    port = free_port_pair()
    print(f"beamagent demo: sample {args.sample!r}, {args.points} points, output {out}")
    t0 = time.monotonic()
    with simulated_beamline(beamline_yaml, port, out) as _, \
            agent_service(agent_yaml, out / "agent", out) as addresses:
        print(f"  simulated beamline on 127.0.0.1:{port}, agent at {addresses['request']}")
        os.environ.update(ca_client_environment(port))  # before any CA client connects
        from plans.demo_session import DemoSession  # imports CA clients: after the env is set

        session = DemoSession(beamline_yaml, agent_yaml, addresses, out, args)
        try:
            summary = session.run()
        except (KeyboardInterrupt, RunEngineInterrupted):
            session.abort()
            print("interrupted: stopping the simulator and the agent", file=sys.stderr)
            return 130
        except Exception as exc:  # the scientist gets one line; the traceback goes to a file
            (out / "demo-error.log").write_text(traceback.format_exc())
            print(f"demo failed: {type(exc).__name__}: {exc}\n  traceback: "
                  f"{out / 'demo-error.log'}; logs: {out / 'sim.log'}, {out / 'agent.log'}",
                  file=sys.stderr)
            return 1
        finally:
            disconnect_channel_access()  # before the simulator stops: no libca noise
    summary["total wall time"] = f"{time.monotonic() - t0:.1f} s"
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(f"  {k}: {v}" for k, v in summary.items()))
    return 0
