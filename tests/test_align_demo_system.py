"""`beamagent align-demo` end to end on a small budget: simulator subprocess, ophyd-async
devices over CA, the alignment plan and a baseline from one misaligned start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plans.warm_start import measurements_from_documents, read_jsonl

pytestmark = pytest.mark.system


@pytest.mark.timeout(240)
def test_align_demo_runs_and_its_documents_warm_start_a_rerun(tmp_path):
    out = tmp_path / "align"
    result = subprocess.run(
        [sys.executable, "-m", "plans.cli", "align-demo", "--evaluations", "10",
         "--methods", "bo", "nelder_mead", "--output", str(out)],
        capture_output=True, text=True, timeout=220)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bo: frame 10/10" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optics motors"] == 11
    assert "re-measured" in summary["align (trust-region BO, gpCAM)"]
    assert (out / "alignment.png").stat().st_size > 10_000
    files = sorted((out / "documents").glob("*.jsonl"))
    assert len(files) == 2
    for path in files:
        docs = read_jsonl(path)
        start = docs[0][1]
        assert start["plan_name"] == "align" and len(start["motors"]) == 11
        history = measurements_from_documents(docs)
        assert len(history) == 10
        assert all(set(m.positions) == set(start["motors"]) for m in history)
        assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "success"
