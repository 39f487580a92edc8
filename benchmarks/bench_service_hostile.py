"""10,000 hostile messages against the agent service: every one answered or counted, none
crashes it, and how much its memory grows (issue 13).

The service runs as ``beamagent agent`` would (a subprocess, real ZeroMQ on loopback). The
messages, seeded: JSON and msgpack nested 10,000 deep, deep objects, random bytes, bytes that
are not UTF-8, envelopes with wrong or missing fields, measurements with NaN, wrong types or
positions outside the bounds, and 10 MB payloads. Requests go to the ROUTER socket (each must
get an error reply with a reason), measurements to the PULL socket (each must be counted as
rejected). Afterwards the service must still answer a status request and an ask. RSS is read
from /proc/<pid>/status (VmRSS, VmHWM) before and after.

    python benchmarks/bench_service_hostile.py [--messages 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plans.processes import agent_service  # noqa: E402

DEEP = 10_000
MB10 = 10_000_000


def request_payload(kind: str, rng: np.random.Generator, i: int) -> bytes:
    if kind == "deep_json":
        return b"[" * DEEP + b"]" * DEEP
    if kind == "deep_envelope":
        return b'{"type": "release", "request_id": %d, "points": ' % i + b"[" * DEEP \
            + b"]" * DEEP + b"}"
    if kind == "deep_object":
        return b'{"a": ' * 5000 + b"1" + b"}" * 5000
    if kind == "deep_msgpack":
        return b"\x91" * DEEP + b"\x90"
    if kind == "random_bytes":
        return rng.bytes(int(rng.integers(1, 2000)))
    if kind == "not_utf8":
        return b"\xff\xfe" + rng.bytes(20)
    if kind == "wrong_fields":
        bodies = [{"type": "ask", "n": "many"}, {"type": "ask", "n": -3}, {"type": "teleport"},
                  {"request_id": "x"}, {"type": None},
                  {"type": "release", "points": [{"x": "nan"}]}, [1, 2, 3]]
        body = bodies[int(rng.integers(len(bodies)))]
        return json.dumps({**body, "request_id": i} if isinstance(body, dict) else body
                          ).encode()
    if kind == "10MB":
        return b'{"type": "status", "pad": "' + b"x" * MB10 + b'"}'
    raise ValueError(kind)


def measurement_payload(kind: str, rng: np.random.Generator, i: int) -> bytes:
    if kind == "deep_json":
        return b'{"values": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    if kind == "deep_msgpack":
        return b"\x91" * DEEP + b"\x90"
    if kind == "random_bytes":
        return rng.bytes(int(rng.integers(1, 2000)))
    if kind == "bad_values":
        m = {"run_uid": "hostile", "seq": i, "positions": {"x": 0.0, "y": 0.0},
             "values": {"det_norm": float(rng.choice([np.nan, np.inf]))}}
        return json.dumps(m).encode()
    if kind == "out_of_bounds":
        m = {"run_uid": "hostile", "seq": i, "positions": {"x": 1e6, "y": -1e6},
             "values": {"det_norm": 1.0}}
        return msgpack.packb(m)
    if kind == "wrong_types":
        return json.dumps({"run_uid": 7, "seq": "one", "positions": [1, 2],
                           "values": "high"}).encode()
    if kind == "10MB":
        return b'{"run_uid": "' + b"x" * MB10 + b'"}'
    raise ValueError(kind)


#: (kind, share of the messages) per socket; 10 MB payloads are 0.5 % of each
REQUEST_MIX = [("deep_json", 0.15), ("deep_envelope", 0.1), ("deep_object", 0.1),
               ("deep_msgpack", 0.1), ("random_bytes", 0.2), ("not_utf8", 0.05),
               ("wrong_fields", 0.295), ("10MB", 0.005)]
MEASUREMENT_MIX = [("deep_json", 0.2), ("deep_msgpack", 0.15), ("random_bytes", 0.2),
                   ("bad_values", 0.15), ("out_of_bounds", 0.15), ("wrong_types", 0.145),
                   ("10MB", 0.005)]


def rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def service_pid(marker: str) -> int:
    """The pid of the agent process whose command line holds ``marker``."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd and "-m agent" in cmd:
                return int(proc.name)
    raise RuntimeError(f"no agent process with {marker!r} in its command line")


def kinds(mix, n: int, rng) -> list[str]:
    names, shares = zip(*mix, strict=True)
    return list(rng.choice(names, size=n, p=np.array(shares) / sum(shares)))


def send_requests(address: str, payloads, n: int, window: int = 50) -> dict:
    """Pipelined DEALER: ``n`` payloads from the iterator ``payloads``, at most ``window`` in
    flight; counts replies and their reasons."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    answered, with_reason, missing = 0, 0, 0
    reasons: dict[str, str] = {}
    for start in range(0, n, window):
        chunk = [next(payloads) for _ in range(min(window, n - start))]
        for p in chunk:
            sock.send_multipart([b"", p])
        got = 0
        while got < len(chunk) and sock.poll(10_000):
            reply = json.loads(sock.recv_multipart()[-1])
            got += 1
            answered += 1
            if reply.get("type") == "error" and reply.get("error"):
                with_reason += 1
                reasons.setdefault(reply["error"][:60], reply["error"][:200])
        missing += len(chunk) - got
    sock.close()
    return {"sent": n, "answered": answered, "error_with_reason": with_reason,
            "no_reply": missing, "distinct_reasons": len(reasons),
            "example_reasons": list(reasons.values())[:8]}


def service_status(address: str) -> dict | None:
    """The service's own counters (the status reply's ``status.service``), None if silent."""
    reply = call(address, {"type": "status"})
    return None if reply is None else reply["status"]["service"]


def call(address: str, body: dict, timeout_s: float = 10.0) -> dict | None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    sock.send_multipart([b"", json.dumps({**body, "request_id": 1}).encode()])
    reply = json.loads(sock.recv_multipart()[-1]) if sock.poll(int(timeout_s * 1000)) else None
    sock.close()
    return reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n_req = int(args.messages * 0.7)
    n_meas = args.messages - n_req
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with agent_service(REPO / "configs/agent.yaml", folder / "agent", folder) as addr:
            pid = service_pid(str(folder / "agent"))
            before = rss_kb(pid)
            svc0 = service_status(addr["request"])
            t0 = time.monotonic()
            req = (request_payload(k, rng, i)
                   for i, k in enumerate(kinds(REQUEST_MIX, n_req, rng)))
            requests = send_requests(addr["request"], req, n_req)
            push = zmq.Context.instance().socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 2000)
            push.connect(addr["measurement"])
            for i, k in enumerate(kinds(MEASUREMENT_MIX, n_meas, rng)):
                push.send(measurement_payload(k, rng, i))
            push.close()
            deadline = time.monotonic() + 60
            svc = service_status(addr["request"])
            while (svc is None or svc["n_rejected_measurements"]
                   - svc0["n_rejected_measurements"] < n_meas) and time.monotonic() < deadline:
                time.sleep(0.2)
                svc = service_status(addr["request"])
            wall = time.monotonic() - t0
            ask = call(addr["request"], {"type": "ask", "n": 1})
            after = rss_kb(pid)
            log_bytes = (folder / "agent.log").stat().st_size
    result = {
        "messages": args.messages, "seed": args.seed, "wall_s": wall,
        "requests": requests,
        "measurements": {"sent": n_meas, "counted_rejected":
                         svc["n_rejected_measurements"] - svc0["n_rejected_measurements"],
                         "accepted": svc["n_accepted"] - svc0["n_accepted"]},
        "status_rejected_requests": svc["n_rejected_requests"] - svc0["n_rejected_requests"],
        "alive_after": ask is not None and ask.get("type") != "error",
        "rss_kb_before": before["VmRSS"], "rss_kb_after": after["VmRSS"],
        "rss_growth_kb": after["VmRSS"] - before["VmRSS"], "peak_rss_kb": after["VmHWM"],
        "agent_log_bytes": log_bytes,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "requests"}, indent=1))
    print(f"requests: {requests['sent']} sent, {requests['answered']} answered, "
          f"{requests['error_with_reason']} with a reason, {requests['no_reply']} unanswered")
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "service_hostile.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    ok = (requests["no_reply"] == 0 and result["alive_after"]
          and result["measurements"]["counted_rejected"] == n_meas)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
