"""``gp_scan`` across an IOC restart, as a CA client in its own process (libca reads its EPICS
environment once per process; the test kills and restarts the IOC on this port).

``python -m tests.reconnect_scenarios {ophyd_async,classic} --port P --config PATH
--agent AGENT.yaml --points N --kill-after K`` prints JSON lines on stdout:
``{"event": "moving", "point": K+1}`` when the move to point K+1 starts (the test then kills
the IOC), and at the end ``{"event": "result", ...}`` with what it counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def emit(**record) -> None:
    print(json.dumps(record, default=str), flush=True)


class Collector:
    def __init__(self):
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name, doc):
        self.docs.append((name, doc))

    def stream(self, name: str) -> list[dict]:
        uids = {d["uid"] for n, d in self.docs if n == "descriptor" and d["name"] == name}
        return [d for n, d in self.docs if n == "event" and d["descriptor"] in uids]


def run(flavour: str, config: str, agent_yaml: str, points: int, kill_after: int) -> None:
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    from agent.client import AgentClient
    from agent.reducers import ScalarReducer
    from agent.service import serve_in_thread
    from plans.gp_scan import gp_scan
    from tests.devices_system_helpers import beamline_for
    from tests.plans_helpers import BOUNDS, POSITIONS

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    RE = RunEngine(call_returns_result=True)
    docs = Collector()
    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if record.name.startswith("plans"):
                warnings.append(record.getMessage())

    logging.getLogger("plans").addHandler(Keep(logging.WARNING))
    with beamline_for(flavour, RE, config) as bl, serve_in_thread(agent_yaml) as handle:
        x, y = bl.sample_stage.x, bl.sample_stage.y
        RE(bps.mv(bl.scaler.preset_time, 0.01))
        RE(bps.mv(x, 0.0, y, 0.0))
        client = AgentClient(handle.request_address, timeout_s=30)
        reducer = ScalarReducer(positions=POSITIONS, address=handle.measurement_address)
        moving = {"sent": False}

        def hook(msg):
            if (msg.command == "set" and msg.obj is x and not moving["sent"]
                    and len(docs.stream("primary")) == kill_after):
                moving["sent"] = True
                emit(event="moving", point=kill_after + 1, t=time.time())

        RE.msg_hook = hook
        t0 = time.monotonic()
        error = None
        try:
            RE(gp_scan([bl.scaler], x, BOUNDS, y, BOUNDS, agent=client, reducer=reducer,
                       max_points=points, ask_timeout_s=60), docs)
        except Exception as exc:  # the point: report it, with a failed status's own cause
            error = f"{type(exc).__name__}: {exc}"
            status = exc.args[0] if exc.args else None
            cause = status.exception() if hasattr(status, "exception") else None
            if cause is not None:
                error += f" ({type(cause).__name__}: {cause})"
        wall = time.monotonic() - t0
        RE.msg_hook = None
        reducer.close()
        client.close()
    emit(event="result", **summary(docs, points, error, wall, warnings))


def summary(docs: Collector, points: int, error, wall: float, warnings) -> dict:
    primary, proposals = docs.stream("primary"), docs.stream("proposals")
    ids = [e["data"]["proposal_id"] for e in proposals]
    false_arrivals = 0
    for event, prop in zip(primary, proposals, strict=False):
        off = max(abs(event["data"][field] - prop["data"][f"proposal_{c}"])
                  for c, field in (("x", "sample_x"), ("y", "sample_y")))
        false_arrivals += off > 2e-3
    stops = [d for n, d in docs.docs if n == "stop"]
    return {
        "error": error,
        "exit_status": stops[-1]["exit_status"] if stops else None,
        "measured": len(primary),
        "proposals": len(proposals),
        "lost": points - len(primary),
        "duplicates": len(ids) - len(set(ids)),
        "false_arrivals": false_arrivals,
        "reconnects": [e["data"] for e in docs.stream("reconnects")],
        "warnings": warnings[-10:],
        "wall_s": round(wall, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("flavour", choices=["ophyd_async", "classic"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--kill-after", type=int, default=3)
    args = parser.parse_args()
    from tests.epics_env import client_environment

    os.environ.update(client_environment(args.port))  # before any CA library connects
    run(args.flavour, args.config, args.agent, args.points, args.kill_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
