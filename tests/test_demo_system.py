"""The main job end to end: `beamagent demo` as a scientist runs it, on a small budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from event_model import DocumentRouter

pytestmark = pytest.mark.system


class _Counter(DocumentRouter):
    def __init__(self):
        super().__init__()
        self.starts, self.events = [], {}
        self._streams = {}

    def start(self, doc):
        self.starts.append(doc)

    def descriptor(self, doc):
        self._streams[doc["uid"]] = (doc["run_start"], doc["name"])

    def event(self, doc):
        key = self._streams[doc["descriptor"]]
        self.events[key] = self.events.get(key, 0) + 1


@pytest.mark.timeout(240)
def test_demo_runs_and_its_documents_replay(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "plans.cli", "demo", "--points", "20", "--output", str(out)],
        capture_output=True, text=True, timeout=220,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RMSE agent/raster" in result.stdout
    assert (out / "demo.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agent points"] == 20
    # the shipped start: a 4 x 5 raster sized to the 20 points, decided after its first pass
    # of 10 (completed, or its second pass skipped with the first pass as the design)
    assert re.match(r"(20 points, completed|10 points, 2nd pass skipped) \(share \d\.\d\d, "
                    r"plateaus \d\.\d\d\)$", summary["agent start-up design"])

    counter = _Counter()
    for path in sorted((out / "documents").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            counter(entry["name"], entry["doc"])
    plans = {s["plan_name"]: s["uid"] for s in counter.starts}
    assert set(plans) == {"gp_scan", "grid_scan"}
    assert counter.events[(plans["gp_scan"], "primary")] == 20
    assert counter.events[(plans["gp_scan"], "proposals")] == 20
    assert counter.events[(plans["grid_scan"], "primary")] >= 9
