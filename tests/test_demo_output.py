"""`beamagent demo` run again into the same output folder starts clean."""

from plans.demo import prepare_output


def test_an_earlier_runs_output_is_removed_folders_included(tmp_path):
    earlier = [tmp_path / "documents" / "agent.jsonl", tmp_path / "summary.json",
               tmp_path / "demo-error.log", tmp_path / "agent" / "wal.jsonl",
               tmp_path / "agent" / "run_sessions" / "run-1.json"]
    for path in earlier:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    kept = tmp_path / "notes.txt"
    kept.write_text("the scientist's own")
    prepare_output(tmp_path)
    assert not any(path.exists() for path in earlier)
    assert not (tmp_path / "agent" / "run_sessions").exists()
    assert kept.read_text() == "the scientist's own"
