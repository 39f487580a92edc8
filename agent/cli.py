"""``beamagent agent --config configs/agent.yaml``: serve the GP decision engine over ZeroMQ.

Binds 127.0.0.1 unless ``--host`` or ``--bind-all`` says otherwise, and beyond loopback only
with CURVE keys (``service.curve``; ``beamagent keys DIR``). SIGINT/SIGTERM stop it
cleanly, however many arrive (``agent.signals``); the measurement log and the session
table are always current. On start it prints one line
``READY request=... measurement=... status=...`` to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS (FIELD_NOTES)

import yaml  # noqa: E402

from agent.signals import StopFlag  # noqa: E402
from configs.errors import config_error_line  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="YAML",
                        help="agent YAML: engine: (the model and its problem) and service: "
                        "(addresses, checkpoints, CURVE), e.g. configs/agent.yaml")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--host", default=None, help="bind address; beyond loopback only with "
                       "CURVE keys (default: service.host, 127.0.0.1)")
    where.add_argument("--bind-all", action="store_true",
                       help="bind 0.0.0.0, all interfaces (needs CURVE keys)")
    parser.add_argument("--request-port", type=int, default=None, metavar="PORT",
                        help="ROUTER socket for ask/tell/status requests (AgentClient) "
                        "(default: service.request_port, 5580)")
    parser.add_argument("--measurement-port", type=int, default=None, metavar="PORT",
                        help="PULL socket for reduced measurements (reducers) "
                        "(default: service.measurement_port, 5581)")
    parser.add_argument("--status-port", type=int, default=None, metavar="PORT",
                        help="PUB socket of periodic status messages "
                        "(default: service.status_port, 5582)")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="measurement log and session table (default: "
                        "service.checkpoint_dir)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")


def run(args: argparse.Namespace) -> int:
    stop = StopFlag().install()  # first: a SIGTERM during start-up is a clean stop too
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s")
    from pydantic import ValidationError

    from agent.service import AgentService
    from agent.service_config import load_agent_config

    try:
        config = load_agent_config(args.config)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValidationError is a ValueError
        print(f"beamagent agent: {config_error_line(args.config, exc)}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in {
        "host": "0.0.0.0" if args.bind_all else args.host,
        "request_port": args.request_port, "measurement_port": args.measurement_port,
        "status_port": args.status_port, "checkpoint_dir": args.checkpoint_dir,
    }.items() if v is not None}
    try:
        service_config = type(config.service).model_validate(
            {**config.service.model_dump(), **overrides})
    except ValidationError as exc:  # e.g. --bind-all without CURVE: one clear line, no trace
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        print(f"beamagent agent: service config refused: {reasons}", file=sys.stderr)
        return 2
    service = AgentService(config.engine, service_config)
    addresses = service.bind()
    print("READY " + " ".join(f"{k}={v}" for k, v in sorted(addresses.items())), flush=True)
    service.run(stop)
    logging.getLogger(__name__).info("stopped cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="beamagent agent", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
