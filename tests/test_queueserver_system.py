"""System test: ``count`` and ``gp_scan`` queued in bluesky-queueserver and run.

Real pieces only: a ``redis-server`` on a free loopback port, ``start-re-manager`` with the
shipped profile (configs/profile_collection/startup), the session's simulated IOCs over
Channel Access, and the agent service over ZeroMQ. Plans are queued with
``bluesky_queueserver_api.zmq.REManagerAPI`` by the names of the profile's objects; the
profile writes each run's documents as JSON lines into a directory this test gives it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI
from event_model import unpack_event_page

from plans.processes import agent_service
from tests.ioc_fixture import ca_put
from tests.plans_helpers import BOUNDS, write_agent_yaml
from tests.service_helpers import free_tcp_port, kill_group

pytestmark = pytest.mark.system

PROFILE = Path(str(files("configs").joinpath("profile_collection/startup")))
REDIS_SERVER = shutil.which("redis-server")
START_RE_MANAGER = str(Path(sys.executable).with_name("start-re-manager"))
N_POINTS = 5
EXPOSURE_S = 0.05  # scaler preset time for this test; restored after
WAIT_S = 60.0  # bound on every wait for the manager (environment open, queue run)


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not within {timeout_s} s")


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (Debian package redis-server; .ci/run "
                    "installs it)")
    port, workdir = free_tcp_port(), tmp_path_factory.mktemp("redis")
    with open(workdir / "redis.log", "wb") as log:
        proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _redis_ping(port), 20.0, "redis-server PING", proc)
        yield f"127.0.0.1:{port}"
    finally:
        kill_group(proc)


@pytest.fixture
def fast_scaler(sim_beamline) -> Iterator[None]:
    tp = sim_beamline.pv(f"{sim_beamline.config.element('scaler').pv}.TP")
    ca_put(tp, EXPOSURE_S, sim_beamline.port)
    yield
    ca_put(tp, 1.0, sim_beamline.port)


@pytest.fixture(scope="module")
def agent_addresses(tmp_path_factory) -> Iterator[dict[str, str]]:
    workdir = tmp_path_factory.mktemp("agent")
    with agent_service(write_agent_yaml(workdir / "agent.yaml"), workdir / "checkpoint",
                       workdir) as addresses:
        yield addresses


@pytest.fixture(scope="module")
def manager(redis_address, agent_addresses, sim_beamline, tmp_path_factory) -> Iterator[dict]:
    """``start-re-manager`` with the shipped profile, its environment open; yields the API
    client and paths. The environment is closed, and the manager killed, at teardown."""
    tmp_path = tmp_path_factory.mktemp("re-manager")
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    info = f"tcp://127.0.0.1:{free_tcp_port()}"
    documents, existing = tmp_path / "documents", tmp_path / "existing_plans_and_devices.yaml"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "BEAMAGENT_AGENT_ADDRESS": agent_addresses["request"],
           "BEAMAGENT_AGENT_MEASUREMENT_ADDRESS": agent_addresses["measurement"],
           "BEAMAGENT_DOCUMENTS_DIR": str(documents)}
    cmd = [START_RE_MANAGER, "--startup-dir", str(PROFILE),
           "--existing-plans-devices", str(existing),
           "--user-group-permissions", str(PROFILE / "user_group_permissions.yaml"),
           "--redis-addr", redis_address, "--redis-name-prefix", f"qs_test_{os.getpid()}",
           "--zmq-control-addr", control, "--zmq-info-addr", info,
           "--zmq-publish-console", "OFF", "--use-ipython-kernel", "OFF"]
    log_path = tmp_path / "re-manager.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    api = REManagerAPI(zmq_control_addr=control, timeout_recv=2.0)
    try:
        _wait_for(lambda: api.status(reload=True)["manager_state"] == "idle", 30.0,
                  "re-manager answering status", proc)
        api.environment_open()
        api.wait_for_idle(timeout=WAIT_S)
        assert api.status()["worker_environment_exists"], log_path.read_text()[-5000:]
        yield {"api": api, "documents": documents, "existing": existing, "log": log_path}
        api.environment_close()
        api.wait_for_idle(timeout=WAIT_S)
    except BaseException:
        print(log_path.read_text(errors="replace")[-5000:])
        raise
    finally:
        api.close()
        kill_group(proc)


def _runs(documents: Path) -> dict[str, list[tuple[str, dict]]]:
    """Documents by plan name, from the one JSON-lines file per run."""
    runs = {}
    for path in sorted(documents.glob("*.jsonl")):
        docs = [(e["name"], e["doc"]) for e in map(json.loads, path.read_text().splitlines())]
        runs[docs[0][1]["plan_name"]] = docs
    return runs


def _events(docs, stream: str) -> list[dict]:
    """The stream's events (the profile's RunRouter hands the writer event pages)."""
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    events = [e for n, d in docs if n in ("event", "event_page")
              for e in ([d] if n == "event" else unpack_event_page(d))]
    return [e for e in events if e["descriptor"] in uids]


def test_count_and_gp_scan_queued_and_run(manager, fast_scaler):
    api = manager["api"]
    allowed = api.plans_allowed()["plans_allowed"]
    assert {"count", "gp_scan", "align", "progressive_align", "sequential_align"} <= set(allowed)
    devices = api.devices_allowed()["devices_allowed"]
    assert {"agent", "scaler", "sample_x", "sample_y", "bl"} <= set(devices)

    api.item_add(BPlan("count", ["scaler"], num=2))
    api.item_add(BPlan("gp_scan", ["scaler"], "sample_x", list(BOUNDS), "sample_y",
                       list(BOUNDS), agent="agent", reducer="det_norm",
                       max_points=N_POINTS, md={"sample": "queued"}))
    api.queue_start()
    api.wait_for_idle(timeout=WAIT_S)
    history = api.history_get()["items"]

    assert [h["name"] for h in history] == ["count", "gp_scan"]
    for item in history:
        assert item["result"]["exit_status"] == "completed", item["result"]
    runs = _runs(manager["documents"])
    assert set(runs) == {"count", "gp_scan"}
    assert len(_events(runs["count"], "primary")) == 2

    docs = runs["gp_scan"]
    start, stop = docs[0][1], docs[-1][1]
    assert stop["exit_status"] == "success" and "max_points=5" in stop["reason"]
    assert start["sample"] == "queued"
    assert start["motors"] == ["sample_x", "sample_y"] and start["detectors"] == ["scaler"]
    assert start["extents"] == [list(BOUNDS), list(BOUNDS)]
    assert start["agent_config"]["value"] == "det_norm"
    primary, proposals = _events(docs, "primary"), _events(docs, "proposals")
    assert len(primary) == len(proposals) == N_POINTS
    for event, proposal in zip(primary, proposals, strict=True):
        for coordinate, field in (("x", "sample_x"), ("y", "sample_y")):
            assert event["data"][field] == pytest.approx(
                proposal["data"][f"proposal_{coordinate}"], abs=0.01)
            assert BOUNDS[0] <= event["data"][field] <= BOUNDS[1]
        assert event["data"]["det"] > 0 and event["data"]["i0"] > 0
    hints = {d["name"]: d.get("hints") for n, d in docs if n == "descriptor"}
    assert hints["proposals"] == {"proposal": {"fields": []}}


def test_shipped_plan_and_device_lists_are_current(manager):
    """The shipped existing_plans_and_devices.yaml is what the profile gives today (the
    manager wrote the fresh one when the environment opened)."""
    fresh = yaml.safe_load(manager["existing"].read_text())
    shipped = yaml.safe_load((PROFILE / "existing_plans_and_devices.yaml").read_text())
    assert sorted(shipped["existing_plans"]) == sorted(fresh["existing_plans"])
    assert sorted(shipped["existing_devices"]) == sorted(fresh["existing_devices"])
    for name, plan in fresh["existing_plans"].items():
        assert shipped["existing_plans"][name]["parameters"] == plan["parameters"], (
            f"{name}: regenerate {PROFILE / 'existing_plans_and_devices.yaml'} (README, "
            "Queueserver)")
