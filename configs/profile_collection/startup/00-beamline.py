"""Startup profile of the beamagent beamline for bluesky-queueserver (and IPython).

    start-re-manager --startup-dir configs/profile_collection/startup --redis-addr 127.0.0.1:6379

Builds the RunEngine, the beamline's ophyd-async devices from the ``beamline:`` YAML (each
device under its config name: ``scaler``, ``sample_x``, ``dcm_pitch``, ``beam_camera``, ...,
and the whole beamline as ``bl``), the agent (``agent``) and its reducer (``det_norm``), and
imports the plans. Queued plans name them: ``gp_scan(["scaler"], "sample_x", [-10, 10],
"sample_y", [-10, 10], agent="agent", reducer="det_norm", max_points=100)``.

Where things are: the variables below. Each may be overridden by the environment variable in
its comment (so one shipped profile serves a site setup and the tests). Channel Access is
configured as usual by ``EPICS_CA_ADDR_LIST`` (and ``EPICS_CA_AUTO_ADDR_LIST=NO`` on
loopback) in the environment of ``start-re-manager``.
"""

# The plans offered to the queue are the plans in this namespace (noqa: imported to offer).
import os

from bluesky import RunEngine
from bluesky.callbacks.json_writer import JSONLinesWriter
from bluesky.plan_stubs import mv, mvr  # noqa: F401
from bluesky.plans import count, grid_scan, list_scan, rel_scan, scan  # noqa: F401
from event_model import RunRouter
from ophyd_async.plan_stubs import ensure_connected

from agent.reducers import ScalarReducer
from configs import DEFAULT_BEAMLINE
from configs.schema import load_beamline_config
from devices.factory import make_beamline
from plans.agent_device import AgentDevice
from plans.align import align  # noqa: F401
from plans.align_strategies import progressive_align, sequential_align  # noqa: F401
from plans.gp_scan import gp_scan  # noqa: F401

# The beamline: the YAML with the ``beamline:`` section (record names, limits, units).
BEAMLINE_CONFIG = os.environ.get("BEAMAGENT_BEAMLINE_CONFIG", str(DEFAULT_BEAMLINE))
# The agent service (`beamagent agent --config configs/agent.yaml`): its request address
# (ROUTER: ask, config, release; the reducer's acknowledged measurements too) and its
# measurement address (PULL, used only if the reducer is switched to PUSH below).
AGENT_ADDRESS = os.environ.get("BEAMAGENT_AGENT_ADDRESS", "tcp://127.0.0.1:5580")
AGENT_MEASUREMENT_ADDRESS = os.environ.get("BEAMAGENT_AGENT_MEASUREMENT_ADDRESS",
                                           "tcp://127.0.0.1:5581")
# How the reducer delivers: "acknowledged" (resent until the agent acknowledges: exactly once
# across agent restarts) or "push" (fire-and-forget to the measurement address, for
# high-rate data; an agent kill loses what is in flight).
REDUCER_DELIVERY = os.environ.get("BEAMAGENT_REDUCER_DELIVERY", "acknowledged")
AGENT_TIMEOUT_S = 10.0  # s, per request to the agent
# Where every run's documents go, one JSON-lines file per run named by the start uid's first
# part (bluesky's JSONLinesWriter); unset: nowhere.
DOCUMENTS_DIR = os.environ.get("BEAMAGENT_DOCUMENTS_DIR")
CONNECT_TIMEOUT_S = 30.0  # s, for every PV of the beamline to connect

RE = RunEngine()  # before connecting ophyd-async devices
if DOCUMENTS_DIR:
    os.makedirs(DOCUMENTS_DIR, exist_ok=True)
    RE.subscribe(RunRouter([lambda name, doc: ([JSONLinesWriter(DOCUMENTS_DIR)], [])]))

beamline_config = load_beamline_config(BEAMLINE_CONFIG)
bl = make_beamline(beamline_config)
RE(ensure_connected(bl, timeout=CONNECT_TIMEOUT_S))
# Every element and every motor under its config name, as plans are queued with them.
globals().update({e.name: getattr(bl, e.name) for e in beamline_config.elements})
globals().update(bl.motors)
ring_current, shutter = bl.ring_current, bl.shutter

agent = AgentDevice(AGENT_ADDRESS, timeout_s=AGENT_TIMEOUT_S, name="agent")
# det / i0 with counting variances, placed at the sample stage's readbacks (configs/agent.yaml)
if REDUCER_DELIVERY not in ("acknowledged", "push"):
    raise ValueError(f"BEAMAGENT_REDUCER_DELIVERY={REDUCER_DELIVERY!r}: 'acknowledged' or 'push'")
_delivery = ({"request_address": AGENT_ADDRESS} if REDUCER_DELIVERY == "acknowledged"
            else {"address": AGENT_MEASUREMENT_ADDRESS})
det_norm = ScalarReducer(value_name="det_norm", detector="det", monitor="i0",
                         positions={"x": "sample_x", "y": "sample_y"}, **_delivery)

