"""Progress of a run on the terminal: a line every tenth of the expected points."""

from __future__ import annotations

import sys
import time

from bluesky.callbacks.core import CallbackBase


class ProgressPrinter(CallbackBase):
    """Prints ``label: point k/N, elapsed, eta`` for the primary stream of each run."""

    def __init__(self, label: str, expected_points: int, stream=sys.stdout):
        super().__init__()
        self.label, self.expected, self.stream = label, max(1, expected_points), stream
        self._primary: set[str] = set()
        self._t0 = 0.0
        self._next_report = 0

    def start(self, doc):
        self._t0, self._next_report, self._primary = time.monotonic(), 1, set()

    def descriptor(self, doc):
        if doc.get("name") == "primary":
            self._primary.add(doc["uid"])

    def event(self, doc):
        if doc["descriptor"] not in self._primary:
            return
        k = doc["seq_num"]
        if k >= self._next_report or k == self.expected:
            elapsed = time.monotonic() - self._t0
            eta = elapsed / k * (self.expected - k)
            print(f"  {self.label}: point {k}/{self.expected}  elapsed {elapsed:5.1f} s  "
                  f"eta {eta:5.1f} s", file=self.stream, flush=True)
            self._next_report = k + max(1, self.expected // 10)
