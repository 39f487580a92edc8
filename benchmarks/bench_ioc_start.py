"""IOC start-to-connectable time: spawn ``python -m sim`` -> first successful CA read.

Usage: python benchmarks/bench_ioc_start.py [--repeats 10] [--config configs/beamline.yaml]
Prints median/p95 and writes benchmarks/results/ioc_start.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.epics_env import free_port  # noqa: E402
from tests.ioc_fixture import spawn_sim, stop_process_group, wait_connectable  # noqa: E402


def one_start(config: Path) -> float:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = spawn_sim(config, port, log)
        try:
            wait_connectable("BL:RING:CURRENT", port, 30.0, proc)
            return time.perf_counter() - t0
        finally:
            stop_process_group(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "beamline.yaml")
    args = parser.parse_args()
    times = [one_start(args.config) for _ in range(args.repeats)]
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    result = {
        "benchmark": "ioc_start",
        "what": "spawn of python -m sim to first successful CA read of BL:RING:CURRENT",
        "repeats": args.repeats,
        "median_s": statistics.median(times),
        "p95_s": p95,
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "samples_s": times,
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
    }
    out = REPO / "benchmarks" / "results" / "ioc_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"IOC start to connectable: median {result['median_s']:.3f} s, p95 {p95:.3f} s "
          f"(n={args.repeats}, min {ordered[0]:.3f}, max {ordered[-1]:.3f}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
