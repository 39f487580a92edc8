"""The model and acquisition settings of an agent YAML, for benchmarks that set the problem."""

from __future__ import annotations

from pathlib import Path

import yaml

#: the shipped agent configuration
SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "agent.yaml"
#: engine settings that describe the problem or the schedule, not the model: the benchmark's own
PROBLEM_KEYS = ("coordinates", "value", "stop", "overhead_s", "training", "mode", "seed")
#: training settings that shape the model (the schedule and background are the benchmark's own)
MODEL_TRAINING_KEYS = ("length_scale_bounds", "length_scale_floor")


def model_settings(agent_yaml: Path) -> dict:
    """The ``engine:`` section of ``agent_yaml`` without PROBLEM_KEYS, plus its training's
    MODEL_TRAINING_KEYS (as ``training``, to be merged into the benchmark's own)."""
    engine = yaml.safe_load(agent_yaml.read_text())["engine"]
    settings = {k: v for k, v in engine.items() if k not in PROBLEM_KEYS}
    training = {k: v for k, v in (engine.get("training") or {}).items()
                if k in MODEL_TRAINING_KEYS}
    return {**settings, "training": training} if training else settings


def coordinate_resolution(agent_yaml: Path) -> float | None:
    """The coordinates' common ``resolution`` in ``agent_yaml`` (None if unset); raises
    ValueError if the coordinates differ (the benchmarks' maps are square)."""
    coords = yaml.safe_load(agent_yaml.read_text())["engine"].get("coordinates") or []
    values = {c.get("resolution") for c in coords}
    if len(values) > 1:
        raise ValueError(f"{agent_yaml}: coordinates have different resolutions {values}")
    return values.pop() if values else None
