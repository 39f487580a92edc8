"""Shared pieces of the plan system tests: a small agent config and document bookkeeping."""

from __future__ import annotations

from pathlib import Path

import yaml

HALF_WIDTH_MM = 3.0  # a small square keeps moves short
BOUNDS = (-HALF_WIDTH_MM, HALF_WIDTH_MM)
POSITIONS = {"x": "sample_x", "y": "sample_y"}


def engine_section(max_points: int = 200) -> dict:
    return {
        "coordinates": [
            {"name": "x", "low": BOUNDS[0], "high": BOUNDS[1], "units": "mm", "velocity": 50.0},
            {"name": "y", "low": BOUNDS[0], "high": BOUNDS[1], "units": "mm", "velocity": 50.0},
        ],
        "value": "det_norm",
        "mode": "mapping",
        "initial_design": {"n_points": 6},
        "stop": {"max_points": max_points},
        "seed": 1,
    }


def write_agent_yaml(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"engine": engine_section()}))
    return path


class Documents:
    """Collects a run's documents; splits events by stream."""

    def __init__(self):
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name, doc):
        self.docs.append((name, doc))

    def start(self) -> dict:
        return next(d for n, d in self.docs if n == "start")

    def stream(self, name: str) -> list[dict]:
        uids = {d["uid"] for n, d in self.docs if n == "descriptor" and d["name"] == name}
        return [d for n, d in self.docs if n == "event" and d["descriptor"] in uids]
