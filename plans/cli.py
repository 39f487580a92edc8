"""The ``beamagent`` console script: ``beamagent sim|agent|keys|demo|align-demo|export ...``.

Each subcommand lives in its own package and is imported only when chosen, so
``beamagent agent`` never imports the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

# subcommand -> (module, help). The module provides add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "sim": ("sim.cli", "serve the simulated beamline (caproto IOCs) on loopback"),
    "agent": ("agent.cli", "serve the GP decision engine over ZeroMQ"),
    "keys": ("agent.keys_cli", "generate CURVE keys for the agent service and its clients"),
    "demo": ("plans.demo", "run an autonomous 2-D map end to end on the simulator"),
    "align-demo": ("plans.align_demo", "align the simulated optics end to end, with baselines"),
    "export": ("plans.export_cli", "write a run's documents (JSON lines) as a NeXus file"),
    "status": ("agent.status_cli", "print an agent service's status: sessions, points, pending"),
}
DESCRIPTION = ("Autonomous experiment control for beamlines: a simulated beamline, the GP "
               "decision engine service, end-to-end demos and the NeXus export.")
EPILOG = "'beamagent COMMAND --help' describes a command and its options."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default appended unless its help names it
    (no default shown for flags and options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.required or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def plain(text: str) -> str:
    """reStructuredText markup out of a docstring: ``code`` and :role:`name` as plain text."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "'")


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="beamagent", description=DESCRIPTION,
                                     epilog=EPILOG, formatter_class=HelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name != chosen:
            subparsers.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, formatter_class=HelpFormatter,
                                    description=plain(module.__doc__ or help_text))
        module.add_arguments(sub)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
