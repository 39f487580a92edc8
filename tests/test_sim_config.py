"""Config validation: the whole YAML is checked and errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.config import load_config
from sim.errors import SimConfigError, SimError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((REPO / "configs" / "beamline.yaml").read_text())
    mutate(data)
    path = tmp_path / "beamline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["beamline.yaml", "beamline_imperfect.yaml"])
def test_shipped_configs_validate(name):
    full = load_config(REPO / "configs" / name)
    assert full.beamline.prefix == "BL:" and full.simulation.sample


def test_seed_override():
    assert load_config(REPO / "configs" / "beamline.yaml", seed=42).simulation.seed == 42


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["simulation"].update(samplee="domains"), "samplee"),
        (lambda d: d["simulation"].update(sample="blobs"), "sample"),
        (lambda d: d["simulation"]["flux"].update(i0_cps=-1), "i0_cps"),
        (lambda d: d["simulation"].update(tick_s=0), "tick_s"),
        (lambda d: d["simulation"].update(motors={"sample_z": {}}), "sample_z"),
        (lambda d: d["simulation"].update(motors={"sample_x": {"jitter": 1}}), "jitter"),
        (lambda d: d["simulation"]["ring"].update(schedule=[{"at_s": 1, "action": "kick"}]),
         "action"),
        (lambda d: d["beamline"]["elements"][0]["motors"][0].update(velocity=0), "velocity"),
        (lambda d: d["beamline"]["elements"][0]["motors"][0].update(role="yaw"), "yaw"),
        (lambda d: d["beamline"]["elements"].append({"kind": "mirror"}), "mirror"),
        (lambda d: d.update(simulatoin={}), "simulatoin"),
    ],
)
def test_bad_config_rejected_naming_the_key(tmp_path, mutate, needle):
    with pytest.raises(SimConfigError, match=needle) as info:
        load_config(write(tmp_path, mutate))
    assert isinstance(info.value, SimError) and isinstance(info.value, ValueError)
