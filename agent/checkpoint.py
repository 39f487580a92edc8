"""Engine checkpoints: JSON (never pickle), written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from agent.errors import AgentError

FORMAT = "beamagent.engine.checkpoint"
VERSION = 1
FILENAME = "engine_checkpoint.json"


class CheckpointError(ValueError, AgentError):
    """A checkpoint that cannot be read (names the file and what is wrong)."""


def write_atomic(path: Path, state: dict, fsync: bool = True) -> Path:
    """Write ``state`` as JSON to ``path`` so readers see the old or the new file, never half.

    ``fsync=False`` skips the flush to disk: still whole after a kill of the process (the OS
    keeps what was written), not after a power loss; about a millisecond cheaper."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path) -> dict:
    """Read a checkpoint. Raises CheckpointError naming the file if it is not one of ours."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable ({exc})") from None
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: format/version "
                              f"{state.get('format')!r}/{state.get('version')!r}, "
                              f"expected {FORMAT!r}/{VERSION}")
    return state
