"""A small parent of the demo's children, for the signal tests.

``python -m tests.process_scenarios --port P --dir D [--agent]`` starts the simulated
beamline (and the agent service) the way ``beamagent demo`` does (``plans.processes``),
prints ``CHILDREN <pid> ...`` and waits to be killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path

from configs import DEFAULT_BEAMLINE
from plans.processes import agent_service, simulated_beamline


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--agent", type=Path, default=None, help="agent YAML: start it too")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        pids = [stack.enter_context(simulated_beamline(DEFAULT_BEAMLINE, args.port,
                                                       args.dir)).pid]
        if args.agent is not None:
            stack.enter_context(agent_service(args.agent, args.dir / "ck", args.dir))
            pids += _agent_pids(pids[0])
        print("CHILDREN", *pids, flush=True)
        threading.Event().wait()  # until killed
    return 0


def _agent_pids(sim_pid: int) -> list[int]:
    """Our other children (the agent service): ``agent_service`` yields addresses only."""

    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != sim_pid:
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    found.append(int(entry.name))
    return found


if __name__ == "__main__":
    sys.exit(main())
