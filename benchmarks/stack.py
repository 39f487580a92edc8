"""The running stack benchmarks share: the simulated beamline and the agent service as
subprocesses, and a RunEngine with the ophyd-async beamline connected to them."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plans.processes import (  # noqa: E402
    agent_service,
    ca_client_environment,
    free_port_pair,
    simulated_beamline,
)


@contextlib.contextmanager
def sim_and_agent(beamline_yaml: Path, agent_yaml: Path, folder: Path) -> Iterator[tuple]:
    """``(RE, bl, addresses)``: the simulator on free loopback ports, the agent service
    (checkpoints and logs in ``folder``), a RunEngine and the connected ophyd-async beamline.
    Channel Access is released on exit."""
    port = free_port_pair()
    with simulated_beamline(beamline_yaml, port, folder), \
            agent_service(agent_yaml, folder / "agent", folder) as addresses:
        os.environ.update(ca_client_environment(port))  # before any CA library connects
        from bluesky import RunEngine
        from ophyd_async.plan_stubs import ensure_connected

        from devices import disconnect_channel_access, load_beamline_config, make_beamline

        RE = RunEngine(call_returns_result=True)
        bl = make_beamline(load_beamline_config(beamline_yaml))
        RE(ensure_connected(bl, timeout=20))
        try:
            yield RE, bl, addresses
        finally:
            disconnect_channel_access()
