"""The plans as services see them, offline: bluesky-queueserver's plan description,
validation and name-to-object conversion (its own functions, with the shipped profile's plan
and device lists), what blueapi reads (type hints that resolve, every parameter typed, device
parameters typed by bluesky protocols or ophyd-async devices), and the live-view metadata a
BestEffortCallback reads from a gp_scan run (hints, extents)."""

import inspect
import typing
from importlib.resources import files
from pathlib import Path

import pytest
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.protocols import Movable, Readable
from bluesky.utils import Msg
from bluesky_queueserver import validate_plan
from bluesky_queueserver.manager.profile_ops import (
    _process_plan,
    load_allowed_plans_and_devices,
    prepare_plan,
)
from numpydoc.docscrape import NumpyDocString
from ophyd.sim import SynAxis, SynGauss
from ophyd_async.core import Device

from agent.reducers import ScalarReducer
from agent.service import serve_in_thread
from plans.agent_device import AgentDevice
from plans.align import align
from plans.align_strategies import progressive_align, sequential_align
from plans.gp_scan import gp_scan
from tests.plans_helpers import BOUNDS, POSITIONS, write_agent_yaml

PROFILE = Path(str(files("configs").joinpath("profile_collection/startup")))
PLANS = [gp_scan, align, progressive_align, sequential_align]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.__name__)
def test_annotations_resolve_and_every_parameter_is_typed_and_documented(plan):
    hints = typing.get_type_hints(plan)  # fails on a string annotation that does not resolve
    parameters = inspect.signature(plan).parameters
    assert not [n for n, p in parameters.items() if isinstance(p.annotation, str)]
    assert set(parameters) <= set(hints), set(parameters) - set(hints)
    generator = hints["return"]
    assert typing.get_origin(generator) is typing.get_origin(typing.Generator)
    assert typing.get_args(generator)[0] is Msg  # blueapi's test for a plan
    documented = {p.name.lstrip("*") for p in NumpyDocString(plan.__doc__)["Parameters"]}
    assert documented == set(parameters)


def _bluesky_typed(annotation) -> bool:
    args = typing.get_args(annotation)
    if args:
        return any(_bluesky_typed(a) for a in args)
    return annotation in (Readable, Movable) or (
        inspect.isclass(annotation) and issubclass(annotation, Device))


@pytest.mark.parametrize("plan, names", [
    (gp_scan, ["detectors", "args", "agent"]),
    (align, ["detectors", "motors"]),
    (progressive_align, ["detectors", "stages"]),
    (sequential_align, ["detectors", "motors"]),
], ids=lambda v: getattr(v, "__name__", ""))
def test_device_parameters_are_typed_as_devices(plan, names):
    hints = typing.get_type_hints(plan)
    assert all(_bluesky_typed(hints[n]) for n in names), {n: hints[n] for n in names}


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.__name__)
def test_queueserver_describes_the_parameters(plan):
    described = {p["name"]: p for p in _process_plan(
        plan, existing_devices={}, existing_plans={})["parameters"]}
    assert all(p.get("description") for p in described.values()), described
    assert described["detectors"]["convert_device_names"]


def _allowed():
    plans, devices = load_allowed_plans_and_devices(
        path_existing_plans_and_devices=PROFILE / "existing_plans_and_devices.yaml",
        path_user_group_permissions=PROFILE / "user_group_permissions.yaml")
    return plans, devices


GP_ITEM = {"name": "gp_scan", "user_group": "primary",
           "args": [["scaler"], "sample_x", [-3, 3], "sample_y", [-3, 3]],
           "kwargs": {"agent": "agent", "reducer": "det_norm", "max_points": 5}}


def test_shipped_lists_validate_a_queued_gp_scan():
    plans, devices = _allowed()
    ok, message = validate_plan(GP_ITEM, allowed_plans=plans["primary"],
                                allowed_devices=devices["primary"])
    assert ok, message
    ok, message = validate_plan({**GP_ITEM, "kwargs": {**GP_ITEM["kwargs"], "max_points": "5x"}},
                                allowed_plans=plans["primary"],
                                allowed_devices=devices["primary"])
    assert not ok and "max_points" in message


def test_queueserver_hands_the_plan_objects_not_names():
    """Names of devices, of the agent and of the reducer become the profile's objects."""
    x, y = SynAxis(name="sample_x"), SynAxis(name="sample_y")
    scaler = SynGauss("scaler", x, "sample_x", center=0, Imax=1, sigma=1)
    agent = AgentDevice("tcp://127.0.0.1:1", name="agent")
    det_norm = ScalarReducer(positions=POSITIONS, sink=lambda m: None)
    namespace = {"gp_scan": gp_scan, "sample_x": x, "sample_y": y, "scaler": scaler,
                 "agent": agent, "det_norm": det_norm}
    plans, devices = _allowed()
    try:
        prepared = prepare_plan(
            GP_ITEM, plans_in_nspace={"gp_scan": gp_scan},
            devices_in_nspace={k: v for k, v in namespace.items() if k != "gp_scan"},
            allowed_plans=plans, allowed_devices=devices, nspace=namespace)
    finally:
        agent.close()
    assert prepared["args"] == [[scaler], x, [-3, 3], y, [-3, 3]]
    assert prepared["kwargs"]["agent"] is agent
    assert prepared["kwargs"]["reducer"] is det_norm


def test_best_effort_callback_maps_the_full_bounds_and_plots_no_proposals(tmp_path):
    x, y = SynAxis(name="sample_x"), SynAxis(name="sample_y")
    det = SynGauss("det", x, "sample_x", center=0, Imax=1, sigma=1)
    handle = serve_in_thread(write_agent_yaml(tmp_path / "agent.yaml"))
    agent = AgentDevice(handle.request_address, timeout_s=10)
    bec = BestEffortCallback()
    bec.disable_table()
    docs = []
    try:
        RunEngine()(gp_scan([det], x, BOUNDS, y, BOUNDS, agent=agent, max_points=3),
                    [lambda n, d: docs.append((n, d)), bec])
    finally:
        agent.close()
        handle.stop()
    start = next(d for n, d in docs if n == "start")
    assert start["extents"] == [list(BOUNDS), list(BOUNDS)]
    streams = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    assert set(streams.values()) == {"primary", "proposals"}
    plotted = {streams[uid] for uid in (*bec._live_scatters, *bec._live_plots) if uid in streams}
    assert plotted == {"primary"}
    (scatter,) = bec._live_scatters[next(u for u, s in streams.items() if s == "primary")
                                    ].values()
    assert tuple(scatter.ax.get_xlim()) == BOUNDS and tuple(scatter.ax.get_ylim()) == BOUNDS
    import matplotlib.pyplot as plt
    plt.close("all")
