"""Warm start: the measurements of earlier ``align`` runs, from their documents.

    docs = read_jsonl("documents/abc123.jsonl")   # or (name, doc) pairs from tiled
    history = measurements_from_documents(docs)
    RE(align([flux], *motors, history=history, max_evaluations=30))

Each event of the run's ``primary`` stream gives one Measurement: positions from the motor
readbacks named in the start document's ``motors``, the value named in its ``plan_args``
(or ``value=``), failures from ``<value>_failure``. Event pages are unpacked with
event-model. Several runs may be concatenated; the ``best`` and ``proposals`` streams are
left out (the best point is a repeat of a primary event).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from event_model import unpack_event_page

from agent.messages import Measurement
from plans.align import measurement_from_reading
from plans.errors import PlanArgumentError


class _Named:
    def __init__(self, name: str):
        self.name = name


def measurements_from_documents(documents: Iterable[tuple[str, dict]],
                                value: str | None = None) -> list[Measurement]:
    """Measurements of the ``align`` runs among ``documents`` (module doc).

    Raises PlanArgumentError if no align run is found or a run lacks the value field.
    """
    out: list[Measurement] = []
    start, primary = None, set()
    for name, doc in documents:
        if name == "start":
            start = doc if doc.get("plan_name") == "align" else None
            primary = set()
        elif start is None:
            continue
        elif name == "descriptor" and doc.get("name") == "primary":
            primary.add(doc["uid"])
        elif name in ("event", "event_page"):
            events = [doc] if name == "event" else unpack_event_page(doc)
            for event in events:
                if event["descriptor"] in primary:
                    out.append(_measurement(start, event, value))
    if not out:
        raise PlanArgumentError("no align run with primary events in these documents")
    return out


def _measurement(start: dict, event: dict, value: str | None) -> Measurement:
    field = value or start["plan_args"]["value"]
    data = event["data"]
    if field not in data:
        raise PlanArgumentError(f"run {start['uid']}: events have no field {field!r}; "
                                f"fields: {sorted(data)}")
    reading = {k: {"value": v} for k, v in data.items()}
    motors = [_Named(m) for m in start["motors"]]
    return measurement_from_reading(reading, motors, field, start["uid"], event["seq_num"] - 1)


def read_jsonl(path: str | Path) -> list[tuple[str, dict]]:
    """(name, doc) pairs of a file of bluesky's ``JSONLinesWriter`` (one
    ``{"name": ..., "doc": ...}`` per line)."""
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [(d["name"], d["doc"]) for d in lines]
