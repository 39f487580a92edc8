"""Warm start: the measurements of earlier ``align`` runs, from their documents.

    docs = read_jsonl("documents/abc123.jsonl")   # or (name, doc) pairs from tiled
    history = measurements_from_documents(docs)
    RE(align([flux], *motors, history=history, max_evaluations=30))

Or only the shape of yesterday's optimum (its GP hyperparameters and curvature), which a
drift does not change, as optimiser options (``shape_from_documents``)::

    RE(align([flux], *motors, options=shape_from_documents(docs), max_evaluations=60))

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


def shape_from_documents(documents: Iterable[tuple[str, dict]]) -> dict:
    """TrustRegionBO options from the last ``align`` run among ``documents``:
    ``initial_hyperparameters`` (its last proposal's) and ``prior_curvature`` (fitted to its
    measurements around their best, ``TrustRegionBO.curvature``), with a 2-point start-up
    design. The new run must align the same motors (same order and bounds).

    Raises PlanArgumentError if the run was not a trust_region_bo alignment or has too few
    measurements for a curvature.
    """
    from agent.optimise import TrustRegionBO, TrustRegionBOConfig

    documents = list(documents)
    starts = [d for n, d in documents if n == "start" and d.get("plan_name") == "align"]
    if not starts or starts[-1]["optimiser"].get("kind") != "trust_region_bo":
        raise PlanArgumentError("shape_from_documents needs a trust_region_bo align run")
    start = starts[-1]
    run = _run_documents(documents, start["uid"])
    optimiser = TrustRegionBO(TrustRegionBOConfig.model_validate(start["optimiser"]))
    for m in measurements_from_documents(run):
        optimiser.tell(m)
    h = optimiser.curvature()
    if h is None:
        raise PlanArgumentError(f"run {start['uid']}: too few measurements for a curvature")
    options = {"prior_curvature": h.tolist(), "n_initial": 2}
    hps = _last_hyperparameters(run)
    if hps:
        options["initial_hyperparameters"] = hps
    return options


def _run_documents(documents: list, uid: str) -> list:
    """The documents of run ``uid`` (start to stop)."""
    out, inside = [], False
    for name, doc in documents:
        if name == "start":
            inside = doc["uid"] == uid
        if inside:
            out.append((name, doc))
    return out


def _last_hyperparameters(run: list) -> list[float]:
    proposals = {d["uid"] for n, d in run if n == "descriptor" and d.get("name") == "proposals"}
    hps = [d["data"].get("proposal_hyperparameters") for n, d in run
           if n == "event" and d["descriptor"] in proposals]
    hps = [list(map(float, h)) for h in hps if h is not None and len(h)]
    return hps[-1] if hps else []


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
