"""The demo's RunEngine session: connect, map with the agent, raster at equal beamtime, score.

Imported only after the Channel Access environment is set (libca reads it once).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky.callbacks.json_writer import JSONLinesWriter
from ophyd_async.plan_stubs import ensure_connected

from agent.client import AgentClient
from agent.config import load_engine_config
from agent.engine import Engine
from agent.reducers import ScalarReducer
from agent.status_cli import design_summary, fetch_status
from devices import load_beamline_config, make_beamline
from plans.figure import write_figure
from plans.gp_scan import gp_scan
from plans.progress import ProgressPrinter
from plans.sample_measures import kind_measures, map_kind
from plans.scoring import Truth, motion_time_s, raster_map, rmse
from sim.beamline import hidden_sample
from sim.config import load_config

POSITIONS = {"x": "sample_x", "y": "sample_y"}
BOUNDS = (-10.0, 10.0)


@dataclass
class RunRecord:
    """What one run's documents say: point positions, det/i0 values, beamtime."""

    points: np.ndarray  # (m, 2) readbacks, mm
    values: np.ndarray  # (m,) det/i0
    times_s: np.ndarray  # (m,) when each point was recorded, s after the run started
    beamtime_s: float
    proposals: list[dict]  # provenance events' data (agent runs)
    uid: str = ""  # the run's (its agent session's) uid


def record_of(docs: list[tuple[str, dict]]) -> RunRecord:
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = [(streams[d["descriptor"]], d["data"]) for n, d in docs if n == "event"]
    times = [(streams[d["descriptor"]], d["time"]) for n, d in docs if n == "event"]
    primary = [data for stream, data in events if stream == "primary"]
    start = next(d for n, d in docs if n == "start")
    stop = next(d for n, d in docs if n == "stop")
    return RunRecord(
        points=np.array([[e["sample_x"], e["sample_y"]] for e in primary]),
        values=np.array([e["det"] / e["i0"] for e in primary]),
        times_s=np.array([t - start["time"] for stream, t in times if stream == "primary"]),
        beamtime_s=stop["time"] - start["time"],
        proposals=[data for stream, data in events if stream == "proposals"],
        uid=start["uid"],
    )


def percentiles(values, unit_scale: float = 1e3) -> str:
    p50, p95 = np.percentile(np.asarray(values) * unit_scale, [50, 95])
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"


class DemoSession:
    def __init__(self, beamline_yaml: Path, agent_yaml: Path, addresses: dict[str, str],
                 out: Path, args: argparse.Namespace):
        self.beamline_yaml, self.agent_yaml = beamline_yaml, agent_yaml
        self.addresses, self.out, self.args = addresses, out, args
        self.config = load_beamline_config(beamline_yaml)
        self.RE = RunEngine()  # before connecting ophyd-async devices (FIELD_NOTES)
        self.design = "-"  # the agent's start-up design, from its status after the run

    def abort(self) -> None:
        """After Ctrl-C: the RunEngine pauses; end the run as aborted (documents closed)."""
        if self.RE.state != "idle":
            self.RE.abort("Ctrl-C")

    def run(self) -> dict:
        bl = make_beamline(self.config)
        self.RE(ensure_connected(bl, timeout=20))
        self.RE(bps.mv(bl.scaler.preset_time, self.args.exposure_s))
        print("  devices connected; mapping with the agent")
        agent_run, received = self.map_with_agent(bl)
        n = self.raster_size(agent_run)
        print(f"  agent done in {agent_run.beamtime_s:.1f} s; raster {n}x{n} of equal beamtime")
        raster = self.run_raster(bl, n)
        return self.report(agent_run, received, raster, n)

    def _record(self, plan, progress: ProgressPrinter, *extra) -> RunRecord:
        docs: list = []
        writer = JSONLinesWriter(str(self.out / "documents"))
        self.RE(plan, [writer, progress, lambda n, d: docs.append((n, d)), *extra])
        return record_of(docs)

    def map_with_agent(self, bl) -> tuple[RunRecord, list]:
        client = AgentClient(self.addresses["request"], timeout_s=10.0)
        # acknowledged delivery to the request address: exactly once, even across agent kills
        reducer = ScalarReducer(positions=POSITIONS, request_address=self.addresses["request"])
        received: list = []  # the same reduction as the agent's, kept for the posterior
        mirror = ScalarReducer(positions=POSITIONS, sink=received.append)
        plan = gp_scan([bl.scaler], bl.sample_stage.x, BOUNDS, bl.sample_stage.y, BOUNDS,
                       agent=client, reducer=reducer, max_points=self.args.points,
                       md={"demo": {"sample": self.args.sample, "seed": self.args.seed}})
        try:
            record = self._record(plan, ProgressPrinter("agent", self.args.points), mirror)
            status = fetch_status(self.addresses["request"], 10.0)
        finally:
            reducer.close()
            client.close()
        session = status["run_sessions"]["sessions"].get(record.uid, {})
        self.design = design_summary(session.get("initial_design"))
        return record, received

    def raster_size(self, agent_run: RunRecord) -> int:
        """The largest n whose n x n snake raster fits in the agent's beamtime.

        Per-point overhead (everything but motion and exposure) is taken from the agent run.
        """
        velocity = self.args.velocity_mm_s
        accl = self.config.motor("sample_x").acceleration_s
        m = len(agent_run.points)
        motion = motion_time_s(agent_run.points, velocity, accl)
        per_point = max(0.0, (agent_run.beamtime_s - motion) / m)
        n = 2
        while (n + 1) ** 2 * per_point + self._raster_motion(n + 1, velocity, accl) \
                <= agent_run.beamtime_s:
            n += 1
        return n

    @staticmethod
    def _raster_motion(n: int, velocity: float, accl: float) -> float:
        """Motion time of an n x n snake raster over BOUNDS (n - 1 steps per row, n - 1 row
        changes), with the simulated record's ramps."""
        step = (BOUNDS[1] - BOUNDS[0]) / (n - 1)
        one_step = motion_time_s(np.array([[0.0], [step]]), velocity, accl)
        return (n * (n - 1) + (n - 1)) * one_step

    def run_raster(self, bl, n: int) -> RunRecord:
        x, y = bl.sample_stage.x, bl.sample_stage.y
        plan = bp.grid_scan([bl.scaler], y, *BOUNDS, n, x, *BOUNDS, n, snake_axes=True,
                            md={"demo": {"role": "raster at equal beamtime"}})
        return self._record(plan, ProgressPrinter("raster", n * n))

    def sample(self):
        """The hidden sample and its signal -> expected det/i0 (dark counts included,
        sim.physics)."""
        config = load_config(self.beamline_yaml)
        flux = config.simulation.flux

        def to_value(signal):
            return (flux.det_cps * signal + flux.dark_cps) / (flux.i0_cps + flux.dark_cps)
        return hidden_sample(config), to_value

    def truth(self, n: int = 101) -> Truth:
        xs = ys = np.linspace(*BOUNDS, n)
        gx, gy = np.meshgrid(xs, ys)
        sample, to_value = self.sample()
        return Truth(xs, ys, to_value(sample.signal(gx, gy, None)))

    def posterior(self, received: list, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
        engine = Engine.from_measurements(load_engine_config(self.agent_yaml), received)
        try:
            engine.wait_for_training(120.0)
            pts = truth.points()
            parts = [engine.posterior(pts[i:i + 500]) for i in range(0, len(pts), 500)]
        finally:
            engine.close()
        mean = np.concatenate([p[0] for p in parts]).reshape(truth.z.shape)
        std = np.sqrt(np.concatenate([p[1] for p in parts])).reshape(truth.z.shape)
        return mean, std

    def kind_summary(self, truth: Truth, agent_z: np.ndarray, raster_z: np.ndarray) -> dict:
        """The measures of the sample's kind of map (plans.sample_measures), agent and raster."""
        sample, to_value = self.sample()
        agent = kind_measures(sample, to_value, truth, agent_z)
        raster = kind_measures(sample, to_value, truth, raster_z)
        out = {"map kind": map_kind(sample)}
        for name in agent:
            out[f"{name} agent"] = round(agent[name], 3)
            out[f"{name} raster"] = round(raster[name], 3)
        return out

    def report(self, agent_run: RunRecord, received: list, raster: RunRecord, n: int) -> dict:
        """Scores the agent on the points it had measured when the raster's beamtime had
        passed (the raster is the largest that fits, so it may take a little less time)."""
        truth = self.truth()
        k = int(np.searchsorted(agent_run.times_s, raster.beamtime_s, side="right"))
        mean, std = self.posterior([m for m in received if m.seq < k], truth)
        order = np.lexsort((raster.points[:, 0], raster.points[:, 1]))
        xs = np.linspace(*BOUNDS, n)
        raster_z = raster_map(xs, xs, raster.values[order].reshape(n, n), truth)
        agent_rmse, raster_rmse = rmse(mean, truth), rmse(raster_z, truth)
        waits = [p["proposal_wait_s"] for p in agent_run.proposals]
        decisions = [p["proposal_decision_time_s"] for p in agent_run.proposals]
        summary = {
            "sample": self.args.sample,
            "agent points": len(agent_run.points),
            "agent beamtime": f"{agent_run.beamtime_s:.1f} s",
            "agent start-up design": self.design,
            "agent scored at the raster's beamtime": f"first {k} points",
            "raster points": f"{n}x{n} = {n * n}",
            "raster beamtime": f"{raster.beamtime_s:.1f} s",
            "RMSE agent": f"{agent_rmse:.3g}",
            "RMSE raster": f"{raster_rmse:.3g}",
            "RMSE agent/raster": f"{agent_rmse / raster_rmse:.2f}",
            **self.kind_summary(truth, mean, raster_z),
            "decision time (agent)": percentiles(decisions),
            "plan blocked on agent": percentiles(waits),
            "figure": str(self.out / "demo.png"),
            "documents": str(self.out / "documents"),
        }
        write_figure(self.out / "demo.png", truth, raster_z, raster.points, mean, std,
                     agent_run.points[:k], summary)
        if not math.isfinite(agent_rmse):
            raise RuntimeError(f"agent RMSE is {agent_rmse}: the posterior is not finite")
        return summary
