"""``beamagent export RUN.jsonl --nexus out.nxs``: a run's documents as a NeXus/HDF5 file.

Reads the documents bluesky's ``JSONLinesWriter`` wrote (one ``{"name": ..., "doc": ...}``
per line; events or event pages) and writes one NXentry per run (``plans.nexus``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROG = "beamagent export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("documents", type=Path, metavar="RUN.jsonl",
                        help="a run's documents as JSON lines (e.g. documents/<uid8>.jsonl in "
                        "beamagent demo's output)")
    parser.add_argument("--nexus", type=Path, required=True, metavar="OUT.nxs",
                        help="the NeXus/HDF5 file to write (replaced if it exists)")
    parser.add_argument("--signal", default=None, metavar="FIELD",
                        help="primary-stream field plotted as the signal of NXdata "
                        "(default: the first detector field)")


def read_documents(path: Path) -> list[tuple[str, dict]]:
    """(name, doc) pairs of a JSON-lines file. Raises ExportError naming file and line."""
    from plans.nexus import ExportError

    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    documents = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                documents.append((entry["name"], entry["doc"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ExportError(f"{path}, line {number}: not a {{\"name\": ..., \"doc\": "
                                  f"...}} document line ({type(exc).__name__}: {exc})") from None
    return documents


def run(args: argparse.Namespace) -> int:
    try:
        from plans.nexus import ExportError, export_documents, split_runs
    except ImportError as exc:  # h5py is in the 'nexus' extra
        print(f"{PROG}: {exc.name or exc} is missing: pip install 'beamagent[nexus]'",
              file=sys.stderr)
        return 2

    try:
        documents = read_documents(args.documents)
        entries = export_documents(documents, args.nexus, signal=args.signal,
                                   source=str(args.documents))
    except ExportError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the output folder does not exist
        print(f"{PROG}: cannot write {args.nexus}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for entry, run_docs in zip(entries, split_runs(documents), strict=True):
        start = run_docs[0][1]
        counts = {}
        for name, doc in run_docs:
            if name == "stop":
                counts = doc.get("num_events", {})
        described = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no stop document"
        print(f"{args.nexus}:/{entry}: {start.get('plan_name', 'run')} {start['uid']} "
              f"({described})")
    return 0
