"""NeXus export of a real gp_scan run: the live callback and ``beamagent export``.

The run is real: ``gp_scan`` asks the agent service (served in-process over ZeroMQ on
loopback) and measures ophyd.sim axes and signals; its documents go to bluesky's
JSONLinesWriter and, live, to ``NexusWriter``. Files are read back with nexusformat and
h5py and checked with nexusformat's NeXus validator (base classes it ships).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from event_model import pack_event_page
from nexusformat.nexus import nxload

from plans.cli import main
from plans.nexus import ExportError, NexusWriter, export_documents
from plans.warm_start import read_jsonl
from tests.nexus_helpers import run_gp_scan
from tests.plans_helpers import POSITIONS

N_POINTS = 8
BEAMAGENT = Path(sys.executable).parent / "beamagent"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(documents as JSON lines, the live writer's file) of one gp_scan run."""
    directory = tmp_path_factory.mktemp("gp_scan")
    live = NexusWriter(directory, filename="live.nxs")
    jsonl = run_gp_scan(directory, N_POINTS, callbacks=[live])
    assert live.error is None
    return jsonl, live.path


def stream(documents, name: str) -> list[dict]:
    uids = {d["uid"] for n, d in documents if n == "descriptor" and d["name"] == name}
    return [d for n, d in documents if n == "event" and d["descriptor"] in uids]


def check_run_file(path: Path, documents) -> None:
    """The file holds the run: metadata, points, proposals, agent configuration."""
    start = next(d for n, d in documents if n == "start")
    root = nxload(str(path))
    entry = root["entry"]
    assert root.nxclass == "NXroot" and entry.nxclass == "NXentry"
    assert entry["entry_identifier"].nxvalue == start["uid"]
    assert entry["title"].nxvalue == "NeXus test"
    assert entry["start_time"].nxvalue.startswith("20") and "end_time" in entry
    assert entry["bluesky/plan_name"].nxvalue == "gp_scan"
    assert entry["bluesky/exit_status"].nxvalue == "success"
    assert entry["sample"].nxclass == "NXsample"
    assert entry["sample/name"].nxvalue == "test pattern"
    instrument = entry["instrument"]
    assert instrument.nxclass == "NXinstrument"
    for motor in ("sample_x", "sample_y"):
        assert instrument[motor].nxclass == "NXpositioner"
        assert instrument[motor]["value"].attrs["units"] == "mm"  # from the agent's config
    assert instrument["det"].nxclass == "NXdetector"

    primary = stream(documents, "primary")
    data = entry["data"]
    assert data.nxclass == "NXdata" and data.nxsignal.nxname == "det"
    assert list(np.atleast_1d(data.attrs["axes"])) == ["sample_x"]  # one per signal dimension
    assert data.attrs["sample_x_indices"] == 0 and data.attrs["sample_y_indices"] == 0
    for field in ("det", *POSITIONS.values()):
        assert data[field].nxvalue == pytest.approx([e["data"][field] for e in primary])

    proposals = stream(documents, "proposals")
    agent = entry["agent"]
    assert agent.nxclass == "NXprocess" and agent["program"].nxvalue == "beamagent"
    assert json.loads(agent["configuration/data"].nxvalue) == start["agent_config"]
    recorded = agent["proposals"]
    assert recorded.nxclass == "NXdata" and recorded.nxsignal.nxname == "acquisition_value"
    assert list(recorded["id"].nxvalue) == [p["data"]["proposal_id"] for p in proposals]
    for coordinate in POSITIONS:
        assert recorded[coordinate].nxvalue == pytest.approx(
            [p["data"][f"proposal_{coordinate}"] for p in proposals])
        assert recorded[coordinate].attrs["units"] == "mm"
    assert list(recorded["phase"].nxvalue) == [p["data"]["proposal_phase"] for p in proposals]
    assert recorded["acquisition_value"].nxvalue == pytest.approx(
        [p["data"]["proposal_acquisition_value"] for p in proposals])
    widest = max(len(p["data"]["proposal_hyperparameters"]) for p in proposals)
    assert recorded["hyperparameters"].shape == (len(proposals), widest)


def test_export_cli_writes_the_run(recorded, tmp_path):
    jsonl, _ = recorded
    out = tmp_path / "run.nxs"
    assert main(["export", str(jsonl), "--nexus", str(out)]) == 0
    check_run_file(out, read_jsonl(jsonl))


def test_live_writer_matches_the_export(recorded, tmp_path):
    jsonl, live = recorded
    check_run_file(live, read_jsonl(jsonl))
    out = tmp_path / "run.nxs"
    export_documents(read_jsonl(jsonl), out)
    with h5py.File(live) as a, h5py.File(out) as b:
        for name in ("data/det", "data/sample_x", "agent/proposals/x", "agent/proposals/id"):
            np.testing.assert_array_equal(a["entry"][name][()], b["entry"][name][()])


def test_file_passes_the_nexus_validator(recorded, tmp_path, capsys):
    jsonl, _ = recorded
    out = tmp_path / "run.nxs"
    export_documents(read_jsonl(jsonl), out)
    warnings, errors = nxload(str(out)).check(level="warning")
    report = capsys.readouterr().out
    assert errors == 0, report
    # the only warnings: ophyd.sim signals carry no units (a real scaler's would)
    assert warnings == report.count("Units of NX_ANY not specified") == 2, report


def test_event_pages_export_like_events(recorded, tmp_path):
    """queueserver's profile writes event pages: one page per stream, same content."""
    jsonl, _ = recorded
    documents = read_jsonl(jsonl)
    paged = [(n, d) for n, d in documents if n != "event"]
    for descriptor in [d for n, d in documents if n == "descriptor"]:
        events = [d for n, d in documents if n == "event" and d["descriptor"] == descriptor["uid"]]
        paged.insert(-1, ("event_page", pack_event_page(*events)))
    out = tmp_path / "paged.nxs"
    export_documents(paged, out)
    check_run_file(out, documents)


def test_live_writer_failure_never_stops_the_run(tmp_path):
    writer = NexusWriter(tmp_path, filename="x.nxs")
    writer("start", {"uid": "abc", "time": 0.0, "plan_name": "count"})
    writer("event", {"descriptor": "never-declared", "data": {}, "uid": "e1"})  # no raise
    assert isinstance(writer.error, ExportError)
    writer("stop", {"time": 1.0})  # ignored: the file was closed at the failure
    strict = NexusWriter(tmp_path, filename="y.nxs", strict=True)
    strict("start", {"uid": "abc", "time": 0.0})
    with pytest.raises(ExportError, match="never-declared"):
        strict("event", {"descriptor": "never-declared", "data": {}, "uid": "e1"})


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BEAMAGENT), "export", *args], capture_output=True, text=True,
                          timeout=60)


def write_lines(path: Path, documents) -> Path:
    path.write_text("".join(json.dumps({"name": n, "doc": d}) + "\n" for n, d in documents))
    return path


def test_export_errors_are_one_line_and_exit_2(recorded, tmp_path):
    jsonl, _ = recorded
    documents = read_jsonl(jsonl)
    start = documents[0]
    no_start = write_lines(tmp_path / "no_start.jsonl", documents[1:])
    no_events = write_lines(tmp_path / "no_events.jsonl",
                            [d for d in documents if d[0] not in ("event", "event_page")])
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text(json.dumps({"name": start[0], "doc": start[1]}) + "\n{oops\n")
    cases = {
        tmp_path / "missing.jsonl": "missing.jsonl: no such file",
        no_start: "no start document",
        no_events: f"run {start[1]['uid']} has no events",
        garbled: "garbled.jsonl, line 2: not a",
    }
    for path, message in cases.items():
        out = tmp_path / f"{path.stem}.nxs"
        result = export_cli(str(path), "--nexus", str(out))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert lines[-1].startswith("beamagent export: ") and message in lines[-1], lines
        assert "Traceback" not in result.stderr and not out.exists()
