"""``beamagent keys DIR``: generate the CURVE keys of the agent service and its clients.

Writes DIR/server.key, DIR/server.key_secret, DIR/<client>.key, DIR/<client>.key_secret and
DIR/authorized_clients/<client>.key (see ``agent.curve``), then prints the lines to put in
the agent YAML and the client's arguments.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where to write the keys (created if missing)")
    parser.add_argument("--client", action="append", default=None, metavar="NAME",
                        help="a client key pair to generate and authorize (repeatable; "
                             "default: one named 'client')")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing keys (their holders are locked out)")


def run(args: argparse.Namespace) -> int:
    from agent.curve import CLIENT, KeyFileError, generate_keys

    clients = tuple(args.client or (CLIENT,))
    try:
        written = generate_keys(args.directory, clients, overwrite=args.overwrite)
    except KeyFileError as exc:
        print(f"beamagent keys: {exc}", file=sys.stderr)
        return 1
    first = clients[0]
    print(f"wrote {len(written)} files in {args.directory}\n"
          "agent YAML:\n"
          "  service:\n"
          "    curve:\n"
          f"      server_secret_key: {written['server_secret']}\n"
          f"      authorized_clients: {written[f'{first}_authorized'].parent}\n"
          "client:\n"
          f"  AgentClient(address, server_key={str(written['server'])!r}, "
          f"client_key={str(written[f'{first}_secret'])!r})")
    return 0
