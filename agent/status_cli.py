"""``beamagent status``: print an agent service's status.

Sends one ``status`` request to the service's request port and prints its run sessions
(runs, points, pending points, training), client sessions, counters and the last
rejections. If no service answers within the timeout it prints one line saying so and
exits 1. ``--json`` prints the whole status as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.client import DEFAULT_REQUEST_ADDRESS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=DEFAULT_REQUEST_ADDRESS,
                        help="the service's request address")
    parser.add_argument("--timeout-s", type=float, default=3.0,
                        help="how long to wait for the answer, s")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--server-key", default=None,
                        help="CURVE: the service's public key (server.key)")
    parser.add_argument("--client-key", default=None,
                        help="CURVE: this client's key pair (client.key_secret)")


def fetch_status(address: str, timeout_s: float, server_key: str | None = None,
                 client_key: str | None = None) -> dict[str, Any]:
    """The service's status, asked without opening a client session (a monitor holds no
    points). Raises AgentTimeoutError naming the address and the timeout,
    AgentRequestError if the service refuses."""
    import zmq

    from agent import curve
    from agent.errors import AgentRequestError, AgentTimeoutError
    from agent.protocol import decode_reply

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if server_key is not None:
            curve.secure_client(sock, curve.load_public(server_key), curve.load_pair(client_key))
        sock.connect(address)
        sock.send_multipart([b"", b'{"type": "status", "request_id": 1}'])
        if not sock.poll(int(timeout_s * 1000)):
            raise AgentTimeoutError(f"no agent service answered at {address} within "
                                    f"{timeout_s} s")
        reply = decode_reply(sock.recv_multipart()[-1])
    finally:
        sock.close(linger=0)
        ctx.term()
    if reply["type"] != "status":
        raise AgentRequestError(f"agent service at {address}: {reply.get('error', reply)}")
    return reply["status"]


def _training(t: dict | None) -> str:
    if not t:
        return "-"
    state = "running" if t.get("running") else "idle"
    return f"{state}, {t.get('n_trainings', 0)} done" + (
        f", last error {t['last_error']}" if t.get("last_error") else "")


def design_summary(design: dict | None) -> str:
    """The start-up design in a few words: its size and, for an interleaved raster, what
    was decided after its first pass (``Engine.status()["initial_design"]``)."""
    if not design:
        return "-"
    decision = design.get("raster_decision")
    if decision is None:
        return f"{design['n_points']} points"
    what = "completed" if decision["second_pass"] else "2nd pass skipped"
    plateaus = decision.get("plateau_share")
    return (f"{design['n_points']} points, {what} (share {decision['residual_share']:.2f}"
            + ("" if plateaus is None else f", plateaus {plateaus:.2f}") + ")")


def format_status(address: str, status: dict[str, Any]) -> str:
    """A few readable lines: the service, a table of run sessions, the counters."""
    service, runs = status.get("service", {}), status.get("run_sessions", {})
    sessions = runs.get("sessions", {})
    clients = service.get("sessions", {})
    lines = [f"agent at {address}: up {service.get('uptime_s', 0):.0f} s, "
             f"{len(sessions)} run sessions (current: {runs.get('current', '-')}), "
             f"{clients.get('n_open', 0)} client sessions"]
    rows = [("session", "runs", "points", "pending", "training", "start", "problem")]
    for uid, s in sessions.items():
        problem = f"{s.get('value')} over {', '.join(s.get('coordinates') or [])}"
        rows.append((uid, str(len(s.get("runs") or [])) if uid != "default" else "-",
                     str(s.get("n_measurements", 0)), str(s.get("n_pending", 0)),
                     _training(s.get("training")) if s.get("loaded") else "not loaded",
                     design_summary(s.get("initial_design")), problem))
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
    lines.append(f"requests {service.get('n_requests', 0)}, proposals "
                 f"{service.get('n_proposals', 0)}, measurements accepted "
                 f"{service.get('n_accepted', 0)} (duplicates {service.get('n_duplicates', 0)})"
                 f", rejections {status.get('n_rejected', 0)}")
    for reason in service.get("last_rejections", [])[-3:]:
        lines.append(f"  rejected {reason}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from agent.errors import AgentError

    if (args.server_key is None) != (args.client_key is None):
        print("beamagent status: CURVE needs both --server-key and --client-key",
              file=sys.stderr)
        return 2
    try:
        status = fetch_status(args.address, args.timeout_s, args.server_key, args.client_key)
    except AgentError as exc:
        print(f"beamagent status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else format_status(args.address, status))
    return 0
