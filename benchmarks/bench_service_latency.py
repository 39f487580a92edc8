"""Agent service wire latencies on loopback: message round trips, ingest throughput, ask.

The engine has the shipped model and acquisition settings (configs/agent.yaml).

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/bench_service_latency.py
Writes benchmarks/results/service_latency.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import zmq  # noqa: E402
from agent_settings import SHIPPED, model_settings  # noqa: E402

from agent.client import AgentClient  # noqa: E402
from agent.config import EngineConfig  # noqa: E402
from agent.messages import Measurement, decode_measurement  # noqa: E402
from agent.reducers import MeasurementPusher  # noqa: E402
from agent.service import serve_in_thread  # noqa: E402
from agent.service_config import ServiceConfig  # noqa: E402

ENGINE = {"coordinates": [{"name": n, "low": -10, "high": 10, "units": "mm", "velocity": 5}
                          for n in ("x", "y")],
          "value": "det_norm", "stop": {"max_points": 5000}, **model_settings(SHIPPED)}


def stats_ms(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"median_ms": round(1e3 * statistics.median(s), 4),
            "p95_ms": round(1e3 * s[int(0.95 * (len(s) - 1))], 4), "n": len(s)}


def measurement(i: int, rng) -> Measurement:
    x, y = rng.uniform(-10, 10, 2)
    return Measurement(run_uid="bench", seq=i, positions={"x": x, "y": y},
                       values={"det_norm": float(np.sin(x) * np.cos(y))},
                       variances={"det_norm": 1e-4})


def push_pull_round_trip(encoding: str, n: int = 2000) -> dict:
    """PUSH -> PULL -> PUSH -> PULL echo of one Measurement, encode and decode included."""
    ctx = zmq.Context()
    a_out, b_in = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    b_out, a_in = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    port1 = b_in.bind_to_random_port("tcp://127.0.0.1")
    port2 = a_in.bind_to_random_port("tcp://127.0.0.1")
    a_out.connect(f"tcp://127.0.0.1:{port1}")
    b_out.connect(f"tcp://127.0.0.1:{port2}")
    m, samples = measurement(0, np.random.default_rng(0)), []
    for _ in range(n):
        t0 = time.perf_counter()
        a_out.send(m.to_msgpack() if encoding == "msgpack" else m.to_json())
        b_out.send(b_in.recv())
        decode_measurement(a_in.recv())
        samples.append(time.perf_counter() - t0)
    for s in (a_out, b_in, b_out, a_in):
        s.close(linger=0)
    ctx.term()
    return stats_ms(samples[100:])


async def service_figures(n_total: int = 1000) -> dict:
    rng = np.random.default_rng(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        handle = serve_in_thread(EngineConfig.model_validate(ENGINE),
                                 ServiceConfig(request_port=0, measurement_port=0,
                                               status_port=0, checkpoint_dir=Path(tmp)))
        client, push = AgentClient(handle.request_address, 30), MeasurementPusher(
            handle.measurement_address)
        try:
            ms = [measurement(i, rng) for i in range(n_total)]
            for level in (50, 200, 1000):
                done = (await client.status())["service"]["n_accepted"]
                t0 = time.perf_counter()
                for m in ms[done:level]:
                    push(m)
                while (await client.status())["service"]["n_accepted"] < level:
                    await asyncio.sleep(0.001)
                ingest_s = time.perf_counter() - t0
                asks, overhead = [], []
                for _ in range(20):
                    t1 = time.perf_counter()
                    proposal = await client.ask(1)
                    asks.append(time.perf_counter() - t1)
                    overhead.append(asks[-1] - proposal.decision_time_s)
                out[f"N={level}"] = {"ingest_per_measurement_ms":
                                     round(1e3 * ingest_s / (level - done), 3),
                                     "ask_round_trip": stats_ms(asks),
                                     "ask_minus_engine_decision": stats_ms(overhead)}
            status = await client.status()
            out["training"] = status["training"]
        finally:
            client.close()
            push.close()
            handle.stop()
    return out


def main() -> None:
    results = {"push_pull_round_trip": {e: push_pull_round_trip(e) for e in ("json", "msgpack")},
               "service": asyncio.run(service_figures())}
    print(json.dumps(results, indent=2))
    path = Path(__file__).parent / "results" / "service_latency.json"
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
