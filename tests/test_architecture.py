"""The layering, kept mechanically: who may import whom (see README, "The pieces").

- ``configs`` (the schema both ``sim`` and ``devices`` read) imports none of the others;
- ``sim`` and ``devices`` import nothing from ``agent`` or ``plans``, nor each other;
- ``agent`` knows positions and numbers, never devices: no ``devices``, ``sim``, ``plans``,
  ophyd or ophyd-async;
- only the demos (for their scoring) read the simulator from ``plans``.
Also: the project passes ruff, and no module imports pickle.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "configs": {"agent", "plans", "sim", "devices", "ophyd", "ophyd_async", "caproto"},
    "sim": {"agent", "plans", "devices"},
    "devices": {"agent", "plans", "sim"},
    "agent": {"devices", "sim", "plans", "ophyd", "ophyd_async"},
    "plans": {"sim"},
}
ALLOWED_SIM_READERS = {"plans/demo_session.py", "plans/align_demo_session.py",
                       "plans/sample_measures.py"}  # scoring
# against the hidden truth
# The queueserver startup profile is user code shipped as package data (not a module of
# configs): like an IPython session it joins agent, devices and plans.
USER_SCRIPTS = "configs/profile_collection/"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(USER_SCRIPTS):
            continue
        banned = FORBIDDEN[package] - ({"sim"} if relative in ALLOWED_SIM_READERS else set())
        bad = imported_roots(path) & banned
        if bad:
            violations.append(f"{relative} imports {sorted(bad)}")
    assert not violations, violations


def test_no_pickle_anywhere():
    users = [p.relative_to(ROOT).as_posix() for pkg in FORBIDDEN
             for p in (ROOT / pkg).rglob("*.py") if "pickle" in imported_roots(p)]
    assert not users, f"pickle must never be on the wire: {users}"


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
