"""``beamagent sim`` / ``python -m sim``: serve the simulated beamline on loopback."""

from __future__ import annotations

import argparse
import sys

import yaml

from configs import DEFAULT_BEAMLINE
from configs.errors import config_error_line
from sim.errors import SimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_BEAMLINE), metavar="YAML",
                        help="beamline YAML (beamline: and simulation: sections)")
    parser.add_argument("--port", type=int, default=5064,
                        help="Channel Access server port (clients: EPICS_CA_ADDR_LIST="
                        "127.0.0.1:PORT)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="interface to serve on (wider than loopback must be explicit)")
    parser.add_argument("--seed", type=int, default=None,
                        help="overrides simulation.seed (default: from the config)")
    parser.add_argument("--misalign", type=float, default=None, metavar="FRACTION",
                        help="overrides simulation.optics.misalignment_fraction, 0 to 0.5 "
                        "(default: from the config)")
    parser.add_argument("--autosave", default=None, metavar="PATH",
                        help="restore motor positions/settings and the scaler's TP from PATH "
                             "at start, save them there periodically and on shutdown "
                             "(overrides simulation.autosave.path; default: off)")
    parser.add_argument("--list", action="store_true",
                        help="print 'record type' lines, like dbl, and exit")


def run(args: argparse.Namespace) -> int:
    from sim.beamline import SimBeamline
    from sim.config import load_config
    from sim.server import run_until_signal

    try:
        config = load_config(args.config, seed=args.seed, misalignment=args.misalign,
                             autosave=args.autosave)
        beamline = SimBeamline(config)
    except (SimError, yaml.YAMLError) as exc:
        print(f"beamagent sim: {config_error_line(args.config, exc)}", file=sys.stderr)
        return 2
    if args.list:
        for name, rtype in beamline.records():
            print(f"{name} {rtype}")
        return 0

    def banner(ctx) -> None:
        print(f"beamagent sim: serving {len(beamline.pvdb)} PVs on {args.interface}:{args.port} "
              f"(sample {config.simulation.sample}, seed {config.simulation.seed}); "
              "Ctrl-C stops", flush=True)
        if beamline.autosave is not None:
            restored = ", ".join(beamline.restored) or "nothing"
            print(f"beamagent sim: autosave {beamline.autosave.path} every "
                  f"{beamline.autosave.period_s} s; restored {restored}", flush=True)

    try:
        run_until_signal(beamline, args.port, args.interface, ready=banner)
    except SimError as exc:  # e.g. the port is taken: say so, no traceback
        print(f"beamagent sim: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
