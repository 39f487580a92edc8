"""CA client scenarios run in a subprocess (libca reads its EPICS env once per process, so a
test that kills or reconfigures an IOC on its own port needs its own client process).

``python -m tests.devices_scenarios {stall,kill,kill_classic} --port P --config PATH``
prints one JSON object per line on stdout: ``{"event": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def outcome(fn) -> dict:
    try:
        value = fn()
    except Exception as exc:  # the point: report what was raised
        cause = exc
        while getattr(cause, "__cause__", None) is not None and type(cause).__name__ in (
            "FailedStatus",
        ):
            cause = cause.__cause__
        return {"raised": type(cause).__name__, "message": str(cause)}
    return {"raised": None, "value": value}


def stall(config_path: str) -> None:
    """Move sample_y into the configured stall region with both flavours."""
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from ophyd_async.plan_stubs import ensure_connected

    from devices import load_beamline_config, make_beamline, make_ophyd_beamline

    cfg = load_beamline_config(config_path)
    RE = RunEngine(call_returns_result=True)
    bl = make_beamline(cfg)
    RE(ensure_connected(bl, timeout=10))
    emit(event="async", **outcome(lambda: RE(bps.mv(bl.sample_stage.y, 6.5)) and None))
    obl = make_ophyd_beamline(cfg, timeout_s=10)
    obl.sample_stage.y.set(0.0).wait(10)
    emit(event="classic", **outcome(lambda: obl.sample_stage.y.set(6.5).wait(10)))
    obl.destroy()


def kill(config_path: str) -> None:
    """Move sample_x (verified, checked puts) and sample_y (stock Motor) while the test
    kills the IOC; report how each move ended."""
    from bluesky import RunEngine
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd_async.epics.motor import Motor
    from ophyd_async.plan_stubs import ensure_connected

    from devices import load_beamline_config, make_beamline

    cfg = load_beamline_config(config_path)
    RE = RunEngine(call_returns_result=True)
    bl = make_beamline(cfg)
    stock_y = Motor(cfg.pv(cfg.motor("sample_y").pv), name="stock_y")
    RE(ensure_connected(bl, stock_y, timeout=10))

    async def moves():
        statuses = {"verified": bl.sample_stage.x.set(9.0), "stock": stock_y.set(9.0)}
        await asyncio.sleep(0.3)
        emit(event="moving", t=time.time())
        results = {}
        for name, status in statuses.items():
            try:
                await asyncio.wait_for(status, timeout=30)
                results[name] = {"raised": None}
            except Exception as exc:
                results[name] = {"raised": type(exc).__name__, "message": str(exc)}
        return results

    emit(event="result", **call_in_bluesky_event_loop(moves(), timeout=60))


def kill_classic(config_path: str) -> None:
    """Classic flavour: move sample_x while the test kills the IOC and restarts it."""
    from devices import load_beamline_config, make_ophyd_beamline

    obl = make_ophyd_beamline(load_beamline_config(config_path), timeout_s=10)
    status = obl.sample_stage.x.set(9.0)
    time.sleep(0.3)
    emit(event="moving", t=time.time())
    emit(event="result", verified=outcome(lambda: status.wait(60)))
    obl.destroy()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["stall", "kill", "kill_classic"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    from tests.epics_env import client_environment

    os.environ.update(client_environment(args.port))  # before any CA library connects
    {"stall": stall, "kill": kill, "kill_classic": kill_classic}[args.scenario](args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
