"""SIGKILL of `beamagent demo`, repeated: does any simulator or agent process outlive it?

Each trial starts ``python -m plans.cli demo`` with its own output folder, waits until both
children (``-m sim`` and ``-m agent``, whose command lines name files in that folder) are
running, waits a seeded random 0 to 8 s more (so the kill lands at start-up, during the map or
during the raster), SIGKILLs the demo process alone, and then polls for up to 5 s for
processes still naming the folder. The parent-death signal (plans.processes) must take both
children down (issue 13: 20 trials, 0 processes left after 5 s).

    python benchmarks/bench_demo_kill.py [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GRACE_S = 5.0


def processes_naming(marker: str) -> dict[int, str]:
    """{pid: command line} of live processes whose command line contains ``marker``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(line for line in (proc / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if marker in cmd and "zombie" not in state:
            found[int(proc.name)] = cmd
    return found


def trial(folder: Path, delay_s: float) -> dict:
    out = folder / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "plans.cli", "demo", "--points", "400",
                             "--output", str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    children: dict[int, str] = {}
    while time.monotonic() < deadline:
        children = {p: c for p, c in processes_naming(str(out)).items() if p != demo.pid}
        if any("-m sim" in c for c in children.values()) and \
                any("-m agent" in c for c in children.values()):
            break
        time.sleep(0.05)
    time.sleep(delay_s)
    os.kill(demo.pid, signal.SIGKILL)
    demo.wait()
    killed = time.monotonic()
    left = processes_naming(str(out))
    while left and time.monotonic() - killed < GRACE_S:
        time.sleep(0.05)
        left = processes_naming(str(out))
    gone_s = time.monotonic() - killed
    for pid in left:  # leave the machine clean for the next trial
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"delay_s": delay_s, "children_seen": len(children), "left_after_5s": len(left),
            "left": list(left.values()), "all_gone_after_s": None if left else gone_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results")
    args = parser.parse_args()
    delays = np.random.default_rng(args.seed).uniform(0.0, 8.0, args.trials)
    results = []
    for i, delay in enumerate(delays):
        with tempfile.TemporaryDirectory() as tmp:
            r = trial(Path(tmp), float(delay))
        results.append(r)
        print(f"trial {i:2d}: kill after +{delay:.1f} s, {r['children_seen']} children, "
              f"left after 5 s: {r['left_after_5s']}"
              + (f", all gone {r['all_gone_after_s']:.2f} s after the kill"
                 if r["all_gone_after_s"] is not None else f" {r['left']}"), flush=True)
    left = sum(r["left_after_5s"] for r in results)
    gone = [r["all_gone_after_s"] for r in results if r["all_gone_after_s"] is not None]
    summary = {"trials": args.trials, "processes_left_after_5s": left,
               "trials_with_leftovers": sum(r["left_after_5s"] > 0 for r in results),
               "max_s_until_all_gone": max(gone) if gone else None, "results": results}
    print(f"{args.trials} trials: {left} processes left after 5 s; all gone within "
          f"{summary['max_s_until_all_gone']} s")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "demo_kill.json").write_text(json.dumps(summary, indent=2))
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
