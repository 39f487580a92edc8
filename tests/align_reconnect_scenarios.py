"""``align`` across an IOC restart, as a CA client in its own process (libca reads its EPICS
environment once per process; the test kills and restarts the IOC on this port).

``python -m tests.align_reconnect_scenarios --port P --config PATH --evaluations N
--kill-after K`` (ophyd-async devices) prints JSON lines on stdout: ``{"event": "triggering",
"evaluation": K+1}`` when the camera is triggered for evaluation K+1 (the test then kills the
IOC; the plan is held until the IOC's port refuses connections, so the kill lands inside that
evaluation's trigger), and at the end ``{"event": "result", ...}`` with what it counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time

from tests.reconnect_scenarios import Collector, emit

MOTORS = ("hkb_pitch", "vkb_pitch")
HALF_RANGE = 3.0  # urad either side of the start
HOLD_S = 10.0  # at most this long the plan is held for the kill


def ioc_gone(port: int, timeout_s: float) -> bool:
    """Wait until nothing accepts TCP connections on ``port`` (the IOC was killed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                pass
        except OSError:
            return True
        time.sleep(0.01)
    return False


def run(port: int, config: str, evaluations: int, kill_after: int) -> None:
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    from plans.align import align
    from plans.objective import FluxDensity
    from sim.config import load_config
    from tests.devices_system_helpers import beamline_for

    RE = RunEngine(call_returns_result=True)
    docs = Collector()
    camera_config = load_config(config).beamline.element("beam_camera")
    with beamline_for("ophyd_async", RE, config) as bl:
        motors = [bl.motor(name) for name in MOTORS]
        start = {m.name: RE(bps.rd(m)).plan_result for m in motors}
        det = FluxDensity(bl.beam_camera, camera_config)
        bounds = {n: (v - HALF_RANGE, v + HALF_RANGE) for n, v in start.items()}
        held = {"sent": False, "gone": None}

        def hook(msg):
            if (msg.command == "trigger" and msg.obj is det and not held["sent"]
                    and len(docs.stream("primary")) == kill_after):
                held["sent"] = True
                emit(event="triggering", evaluation=kill_after + 1, t=time.time())
                held["gone"] = ioc_gone(port, HOLD_S)

        RE.msg_hook = hook
        t0 = time.monotonic()
        error, result = None, None
        try:
            result = RE(align([det], *motors, value=det.name, bounds=bounds,
                              max_evaluations=evaluations), docs).plan_result
        except Exception as exc:  # the point: report it
            error = f"{type(exc).__name__}: {exc}"
        wall = time.monotonic() - t0
        RE.msg_hook = None
        with contextlib.suppress(Exception):
            RE(bps.mv(*[x for m in motors for x in (m, start[m.name])]))
    primary, proposals = docs.stream("primary"), docs.stream("proposals")
    ids = [e["data"]["proposal_id"] for e in proposals]
    false_arrivals = sum(
        max(abs(e["data"][n] - p["data"][f"proposal_{n}"]) for n in MOTORS) > 0.06
        for e, p in zip(primary, proposals, strict=False))
    stops = [d for n, d in docs.docs if n == "stop"]
    emit(event="result", error=error, held_until_gone=held["gone"],
         exit_status=stops[-1]["exit_status"] if stops else None,
         evaluations=result.evaluations if result else None,
         failures=result.failures if result else None,
         measured=len(primary), proposals=len(proposals), duplicates=len(ids) - len(set(ids)),
         false_arrivals=false_arrivals,
         reconnects=[e["data"] for e in docs.stream("reconnects")], wall_s=round(wall, 2))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--evaluations", type=int, default=6)
    parser.add_argument("--kill-after", type=int, default=2)
    args = parser.parse_args()
    from tests.epics_env import client_environment

    os.environ.update(client_environment(args.port))  # before any CA library connects
    run(args.port, args.config, args.evaluations, args.kill_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
