"""A real ``gp_scan`` run in-process, for the NeXus export tests: the agent service on a
thread (real ZeroMQ sockets on loopback), ophyd.sim axes and signals as the beamline."""

from __future__ import annotations

from pathlib import Path

from bluesky import RunEngine
from bluesky.callbacks.json_writer import JSONLinesWriter
from ophyd.sim import SynAxis, SynSignal

from agent.client import AgentClient
from agent.config import EngineConfig
from agent.reducers import ScalarReducer
from agent.service import serve_in_thread
from agent.service_config import ServiceConfig
from plans.gp_scan import gp_scan
from tests.plans_helpers import BOUNDS, POSITIONS, engine_section


def sim_devices():
    """sample_x, sample_y (mm) and a detector whose counts vary over the map, with i0."""
    sx, sy = SynAxis(name="sample_x", egu="mm"), SynAxis(name="sample_y", egu="mm")
    i0 = SynSignal(name="i0", func=lambda: 2.0e5)
    det = SynSignal(name="det", func=lambda: 1000.0 + 50.0 * sx.position - 20.0 * sy.position)
    return sx, sy, det, i0


def run_gp_scan(directory: Path, n_points: int = 8, callbacks=()) -> Path:
    """Run ``gp_scan`` for ``n_points`` points; return the JSONL file of its documents."""
    handle = serve_in_thread(EngineConfig.model_validate(engine_section()),
                             ServiceConfig(request_port=0, measurement_port=0, status_port=0,
                                           checkpoint_dir=directory / "checkpoint"))
    client = AgentClient(handle.request_address, timeout_s=10)
    reducer = ScalarReducer(positions=POSITIONS, address=handle.measurement_address)
    writer = JSONLinesWriter(str(directory))
    sx, sy, det, i0 = sim_devices()
    try:
        RE = RunEngine(call_returns_result=True)
        RE(gp_scan([det, i0], sx, BOUNDS, sy, BOUNDS, agent=client, reducer=reducer,
                   max_points=n_points, md={"sample": "test pattern", "title": "NeXus test"}),
           [writer, *callbacks])
    finally:
        reducer.close()
        client.close()
        handle.stop()
    return directory / writer.filename
