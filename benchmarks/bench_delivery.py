"""Cost per measurement of the two reducer deliveries: PUSH (``ScalarReducer(address=...)``,
fire-and-forget) vs acknowledged (``ScalarReducer(request_address=...)``, the default:
resent until the service acknowledges it, exactly once across agent restarts).

The agent service runs in its own process (``python -m agent``), as on a beamline. Per
delivery, with a fresh service each:

- ``call``: time the reducer takes in the RunEngine's thread per event (reduction,
  encoding and hand-off; the RunEngine waits this long), events paced 2 ms apart;
- ``logged``: from the reducer call until the service has the measurement in its log
  (``measurements.jsonl``, written before any acknowledgement), one at a time;
- ``acknowledged`` (acknowledged only): from the call until the acknowledgement is back;
- ``burst``: 2000 events as fast as the caller can, until all are logged: measurements/s.

``transport``: failed measurements (i0 = 0), logged and acknowledged but not modelled, so
the figures are the delivery's own. ``modelled``: real ones (the service's GP update per
measurement, N up to 600, is then part of the acknowledgement's time), no burst.

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/bench_delivery.py [--n 300]
Writes benchmarks/results/delivery.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
import zmq

from agent.reducers import ScalarReducer

ROOT = Path(__file__).resolve().parents[1]
ENGINE = {"coordinates": [{"name": n, "low": -10.0, "high": 10.0, "units": "mm",
                           "velocity": 5.0} for n in ("x", "y")],
          "value": "det_norm", "stop": {"max_points": 100_000},
          "training": {"max_points": 20}}  # delivery is measured, not GP training
POSITIONS = {"x": "sample_x", "y": "sample_y"}
_serial = itertools.count()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``python -m agent --config`` on free ports in ``directory``."""

    def __init__(self, directory: Path):
        self.ports = {k: free_port() for k in ("request_port", "measurement_port",
                                                "status_port")}
        self.checkpoint = directory / "checkpoint"
        config = directory / "agent.yaml"
        config.write_text(yaml.safe_dump({"engine": ENGINE, "service": {
            **self.ports, "checkpoint_dir": str(self.checkpoint)}}))
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.log = open(directory / "agent.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT, start_new_session=True)
        self.request = f"tcp://127.0.0.1:{self.ports['request_port']}"
        self.measurement = f"tcp://127.0.0.1:{self.ports['measurement_port']}"
        self.wal = self.checkpoint / "measurements.jsonl"
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        ctx = zmq.Context.instance()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}")
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.request)
            sock.send_multipart([b"", json.dumps({"type": "status", "request_id": 1}).encode()])
            answered = sock.poll(500)
            sock.close()
            if answered:
                return
        raise TimeoutError(f"agent at {self.request} not ready in {timeout_s} s")

    def logged_bytes(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def logged_lines(self) -> int:
        return self.wal.read_bytes().count(b"\n") if self.wal.exists() else 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def documents(reducer: ScalarReducer, rng, modelled: bool):
    """Feeds the reducer a run's start and descriptor; returns a function giving an event.
    Not ``modelled``: i0 = 0, so each measurement is a failure ("monitor i0=0 <= 0"), which
    the service logs and acknowledges but never models: the delivery alone is timed."""
    uid = f"bench-{next(_serial)}"
    reducer("start", {"uid": uid, "time": time.time()})
    reducer("descriptor", {"uid": f"{uid}-d", "run_start": uid, "name": "primary",
                           "data_keys": {}, "time": time.time()})
    seq = itertools.count(1)

    def event() -> dict:
        x, y = rng.uniform(-10, 10, 2)
        return {"descriptor": f"{uid}-d", "seq_num": next(seq), "time": time.time(),
                "uid": f"{uid}-e", "timestamps": {},
                "data": {"sample_x": x, "sample_y": y, "det": 1.0e3 * (2 + np.sin(x)),
                         "i0": 2.0e5 if modelled else 0.0}}
    return event


def percentiles_ms(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4),
            "p95_ms": round(float(np.percentile(a, 95)), 4),
            "max_ms": round(float(a.max()), 4), "n": len(a)}


def wait_until(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("not delivered in time")
        time.sleep(2e-5)  # releases the GIL: the sender's thread runs meanwhile


def measure(mode: str, n: int, burst: int, directory: Path, modelled: bool) -> dict:
    service = Service(directory)
    where = {"request_address": service.request} if mode == "acknowledged" \
        else {"address": service.measurement}
    reducer = ScalarReducer(positions=POSITIONS, **where)
    rng = np.random.default_rng(0)
    out: dict = {}
    try:
        event = documents(reducer, rng, modelled)
        for _ in range(20):  # warm-up: connection, session opened, first log line
            reducer("event", event())
        wait_until(lambda: service.logged_lines() == 20)

        call, logged, acked = [], [], []
        for _ in range(n):  # one at a time
            before = service.logged_bytes()
            doc = event()
            t0 = time.perf_counter()
            reducer("event", doc)
            t1 = time.perf_counter()
            if mode == "acknowledged":
                assert reducer.flush(10)
                acked.append(time.perf_counter() - t0)
            wait_until(lambda before=before: service.logged_bytes() > before)
            logged.append(time.perf_counter() - t0)
            call.append(t1 - t0)
        out["call"] = percentiles_ms(call)
        out["logged"] = percentiles_ms(logged)
        if acked:
            out["acknowledged"] = percentiles_ms(acked)

        paced = []
        for _ in range(n):  # the RunEngine's cost when events come 2 ms apart
            doc = event()
            t0 = time.perf_counter()
            reducer("event", doc)
            paced.append(time.perf_counter() - t0)
            time.sleep(0.002)
        out["call_paced_2ms"] = percentiles_ms(paced)
        expected = 20 + 2 * n
        wait_until(lambda: service.logged_lines() == expected)

        if not burst:
            return out
        t0 = time.perf_counter()
        for _ in range(burst):
            reducer("event", event())
        t_calls = time.perf_counter() - t0
        wait_until(lambda: service.logged_lines() == expected + burst, timeout_s=120)
        t_all = time.perf_counter() - t0
        out["burst"] = {"n": burst, "calls_s": round(t_calls, 4), "all_logged_s": round(t_all, 4),
                        "measurements_per_s": round(burst / t_all, 1)}
        assert service.logged_lines() == expected + burst  # nothing lost, nothing twice
    finally:
        reducer.close()
        service.stop()
    if mode == "acknowledged":
        d = reducer.delivery
        out["sender"] = {"sent": d.n_sent, "acknowledged": d.n_acknowledged,
                         "resent": d.n_resent, "refused": d.n_refused, "dropped": d.n_dropped}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="measurements timed one at a time")
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/delivery.json"))
    args = parser.parse_args(argv)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()},
               "n": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, modelled, burst in (("transport", False, args.burst), ("modelled", True, 0)):
            results[kind] = {}
            for mode in ("push", "acknowledged"):
                directory = Path(tmp) / kind / mode
                directory.mkdir(parents=True)
                results[kind][mode] = measure(mode, args.n, burst, directory, modelled)
    for kind in ("transport", "modelled"):
        for mode in ("push", "acknowledged"):
            r = results[kind][mode]
            line = "  ".join(f"{k} {r[k]['p50_ms']:.3f}/{r[k]['p95_ms']:.3f}" for k in
                             ("call", "call_paced_2ms", "logged", "acknowledged") if k in r)
            rate = f"  burst {r['burst']['measurements_per_s']:.0f}/s" if "burst" in r else ""
            print(f"{kind:>9} {mode:>12} (p50/p95 ms): {line}{rate}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
