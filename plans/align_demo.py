"""``beamagent align-demo``: align the simulated optics train end to end, against baselines.

Starts the simulated beamline with its optics misaligned (every optics motor off by up to
``--misalign`` of its range, seeded), connects ophyd-async devices over Channel Access,
measures the camera's dark rate, then from the same misaligned start runs

1. ``align`` (trust-region BO on gpCAM) over all optics motors, ``--evaluations`` frames;
2. ``progressive_align``: element by element from the source (an eighth of the budget each,
   stopping on no improvement), then all motors with the rest, warm-started;
3. the baselines a scientist would use, with the same budget: ``sequential_align``
   (rel_scan + PeakStats passes) and ``align(optimiser="nelder_mead")``;

and writes the documents (JSONL), ``alignment.png`` (best flux density so far against
evaluations, per method) and ``summary.json`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from configs import config_path
from plans.processes import ca_client_environment, free_port_pair, simulated_beamline

METHODS = ("bo", "progressive", "sequential", "nelder_mead")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="beamline.yaml",
                        help="shipped beamline YAML (beamline.yaml, beamline_optics_hard.yaml) "
                        "or a path (default: %(default)s)")
    parser.add_argument("--misalign", type=float, default=0.2, metavar="FRACTION",
                        help="start-up misalignment, fraction of each range")
    parser.add_argument("--evaluations", type=int, default=100, metavar="N",
                        help="camera frames per method (at least 10)")
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        default=["bo", "sequential", "nelder_mead"],
                        help="methods to run, each from the same start (default: bo "
                        "sequential nelder_mead)")
    parser.add_argument("--seed", type=int, default=0, help="misalignment and noise seed")
    parser.add_argument("--output", type=Path, default=Path("beamagent-output/align-demo"),
                        metavar="DIR", help="folder for documents, figure and summary")


def write_beamline_yaml(args: argparse.Namespace, out: Path) -> Path:
    source = Path(args.config) if Path(args.config).is_file() else config_path(args.config)
    data = yaml.safe_load(source.read_text())
    sim = data.setdefault("simulation", {})
    sim["seed"] = args.seed
    sim.setdefault("optics", {})["misalignment_fraction"] = args.misalign
    path = out / "beamline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check_config(args: argparse.Namespace) -> str | None:
    """One line naming a missing or invalid beamline config, or None if it loads."""
    from configs.errors import config_error_line
    from configs.schema import load_beamline_config

    try:
        load_beamline_config(Path(args.config) if Path(args.config).is_file()
                             else config_path(args.config))
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        return config_error_line(args.config, exc)
    return None


def run(args: argparse.Namespace) -> int:
    if args.evaluations < 10:
        print(f"--evaluations {args.evaluations}: need at least 10", file=sys.stderr)
        return 2
    refused = check_config(args)
    if refused:
        print(f"beamagent align-demo: {refused}", file=sys.stderr)
        return 2
    out = args.output.resolve()
    (out / "documents").mkdir(parents=True, exist_ok=True)
    for stale in out.glob("documents/*.jsonl"):
        stale.unlink()
    logging.basicConfig(filename=out / "align-demo.log", filemode="w", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    try:
        beamline_yaml = write_beamline_yaml(args, out)
    except (OSError, yaml.YAMLError) as exc:
        print(f"beamagent align-demo: {exc}", file=sys.stderr)
        return 2
    port = free_port_pair()
    print(f"beamagent align-demo: {args.config}, misaligned by up to {args.misalign:.0%} of "
          f"each range (seed {args.seed}), {args.evaluations} frames per method; output {out}")
    t0 = time.monotonic()
    with simulated_beamline(beamline_yaml, port, out):
        os.environ.update(ca_client_environment(port))  # before any CA client connects
        from plans.align_demo_session import AlignDemoSession  # CA clients: after the env

        session = AlignDemoSession(beamline_yaml, out, args)
        try:
            summary = session.run()
        except KeyboardInterrupt:
            session.abort()
            print("interrupted: stopping the simulator", file=sys.stderr)
            return 130
        finally:
            session.close()
    summary["total wall time"] = f"{time.monotonic() - t0:.1f} s"
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(f"  {k}: {v}" for k, v in summary.items()))
    return 0
