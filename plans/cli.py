"""The ``beamagent`` console script: ``beamagent sim|agent|demo|align-demo ...``.

Each subcommand lives in its own package and is imported only when chosen, so
``beamagent agent`` never imports the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). The module provides add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "sim": ("sim.cli", "serve the simulated beamline (caproto IOCs) on loopback"),
    "agent": ("agent.cli", "serve the GP decision engine over ZeroMQ"),
    "keys": ("agent.keys_cli", "generate CURVE keys for the agent service and its clients"),
    "demo": ("plans.demo", "run an autonomous 2-D map end to end on the simulator"),
    "align-demo": ("plans.align_demo", "align the simulated optics end to end, with baselines"),
}


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="beamagent", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
