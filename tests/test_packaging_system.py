"""The built wheel ships the configs and the optics package, and the simulator runs from it.

The wheel is built offline (``pip wheel --no-deps --no-build-isolation``, with the venv's own
setuptools and wheel) from a copy of the checkout, so setuptools' in-tree ``build/`` and
``*.egg-info`` never land in the working tree. It is then unpacked (a pure-Python wheel is a
zip of the site-packages layout) and ``python -m sim --list`` runs from a directory outside
the checkout with only the unpacked wheel on ``PYTHONPATH``: a file the wheel lacks shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.ioc_fixture import REPO

pytestmark = pytest.mark.system

NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "beamagent-output", "results")
SHIPPED_CONFIGS = ("configs/beamline.yaml", "configs/beamline_optics_hard.yaml",
                   "configs/agent.yaml")


def _quiet_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    source, dist = root / "source", root / "dist"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(dist), "."],
        cwd=source, capture_output=True, text=True, timeout=120, env=_quiet_env())
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = list(dist.glob("beamagent-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_configs_and_the_optics_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (*SHIPPED_CONFIGS, "configs/__init__.py", "configs/schema.py"):
        assert path in names, path
    optics = {f"sim/optics/{p.name}" for p in (REPO / "sim" / "optics").glob("*.py")}
    assert "sim/optics/__init__.py" in optics and optics <= names, sorted(optics - names)
    for module in ("sim/optics_train.py", "sim/camera_record.py", "devices/camera.py",
                   "devices/classic_camera.py"):
        assert module in names, module
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_sim_lists_records_from_the_unpacked_wheel_outside_the_checkout(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere.mkdir()
    env = _quiet_env(PYTHONPATH=str(site))
    origin = subprocess.run(
        [sys.executable, "-c", "import configs, sim; print(sim.__file__); "
         "print(configs.DEFAULT_BEAMLINE)"],
        cwd=elsewhere, capture_output=True, text=True, timeout=30, env=env, check=True)
    for line in origin.stdout.splitlines():  # the unpacked wheel, not the checkout
        assert Path(line).is_relative_to(site), origin.stdout
    shipped = site / "configs" / "beamline.yaml"
    out = subprocess.run([sys.executable, "-m", "sim", "--list", "--config", str(shipped)],
                         cwd=elsewhere, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    listed = dict(line.split() for line in out.stdout.splitlines())
    assert listed["BL:CAM1:Stats1:Total_RBV"] == "ai"
    assert listed["BL:CAM1:image1:ArrayData"] == "waveform"
    assert listed["BL:VKB:PITCH"] == listed["BL:SAMPLE:X"] == "motor"
    assert sum(rtype == "motor" for rtype in listed.values()) == 14  # 11 optics + 3
