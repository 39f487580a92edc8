"""The align-demo's RunEngine session: connect, measure the dark rate, align with each method
from the same start, re-measure, plot. Imported only after the CA environment is set."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: CI and ssh sessions have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from bluesky import RunEngine  # noqa: E402
from bluesky import plan_stubs as bps  # noqa: E402
from bluesky.callbacks.core import CallbackBase  # noqa: E402
from bluesky.callbacks.json_writer import JSONLinesWriter  # noqa: E402
from ophyd_async.plan_stubs import ensure_connected  # noqa: E402

from devices import disconnect_channel_access, load_beamline_config, make_beamline  # noqa: E402
from plans.align import align  # noqa: E402
from plans.align_strategies import sequential_align  # noqa: E402
from plans.objective import FluxDensity, measure_dark  # noqa: E402

OPTICS_KINDS = ("dcm", "slits", "kb_mirror")
LABELS = {"bo": "align (trust-region BO, gpCAM)", "sequential": "sequential 1-D rel_scans",
          "nelder_mead": "Nelder-Mead (scipy)"}


class EvaluationProgress(CallbackBase):
    """Collects the objective of every primary event (across runs) and prints progress."""

    def __init__(self, label: str, field: str, expected: int):
        super().__init__()
        self.label, self.field, self.expected = label, field, max(1, expected)
        self.values: list[float] = []
        self._primary: set[str] = set()
        self._t0 = time.monotonic()

    def descriptor(self, doc):
        if doc.get("name") == "primary":
            self._primary.add(doc["uid"])

    def event(self, doc):
        if doc["descriptor"] in self._primary and self.field in doc["data"]:
            self.values.append(float(doc["data"][self.field]))
            k = len(self.values)
            if k % max(1, self.expected // 10) == 0 or k == self.expected:
                print(f"  {self.label}: frame {k}/{self.expected}  best {max(self.values):.4g}"
                      f"  elapsed {time.monotonic() - self._t0:5.1f} s", flush=True)


class AlignDemoSession:
    def __init__(self, beamline_yaml: Path, out: Path, args: argparse.Namespace):
        self.out, self.args = out, args
        self.config = load_beamline_config(beamline_yaml)
        self.RE = RunEngine(call_returns_result=True)  # before connecting (FIELD_NOTES)

    def abort(self) -> None:
        if self.RE.state != "idle":
            self.RE.abort("Ctrl-C")

    def close(self) -> None:
        disconnect_channel_access()  # before the simulator stops: no libca noise

    def measure(self, det) -> float:
        def plan():
            yield from bps.trigger(det, wait=True)
            return (yield from bps.read(det))
        return float(self.RE(plan()).plan_result[det.name]["value"])

    def run(self) -> dict:
        bl = make_beamline(self.config)
        self.RE(ensure_connected(bl, timeout=20))
        motors = [bl.motor(m.name) for element in self.config.of_kind(*OPTICS_KINDS)
                  for m in element.motors]
        start = {m.name: float(self.RE(bps.rd(m)).plan_result) for m in motors}
        camera = self.config.of_kind("camera")[0]
        dark = self.RE(measure_dark(bl.beam_camera, bl.shutter)).plan_result
        det = FluxDensity(getattr(bl, camera.name), camera, dark)
        j_start = self.measure(det)
        print(f"  {len(motors)} optics motors connected; dark {dark:.1f} counts/s/pixel; "
              f"start flux density {j_start:.4g} counts/s/um^2")
        curves, finals, walls = {}, {}, {}
        for method in self.args.methods:
            self.RE(bps.mv(*[x for m in motors for x in (m, start[m.name])]))
            progress = EvaluationProgress(method, det.name, self.args.evaluations)
            t0 = time.monotonic()
            self.RE(self.plan(method, det, motors),
                    [JSONLinesWriter(str(self.out / "documents")), progress])
            walls[method] = time.monotonic() - t0
            finals[method] = self.measure(det)  # at the positions the method ends at
            curves[method] = progress.values
        self.figure(curves, j_start)
        return self.summary(j_start, curves, finals, walls, dark, len(motors))

    def plan(self, method: str, det, motors):
        n = self.args.evaluations
        if method == "bo":
            return align([det], *motors, value=det.name, max_evaluations=n)
        if method == "nelder_mead":
            return align([det], *motors, value=det.name, max_evaluations=n,
                         optimiser="nelder_mead")
        # two passes when each 1-D scan can still have 5 points, else one; within the budget
        passes = 2 if n >= 2 * 5 * len(motors) else 1
        return sequential_align([det], *motors, value=det.name, passes=passes,
                                num=max(3, n // (passes * len(motors))))

    def figure(self, curves: dict[str, list[float]], j_start: float) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        for method, values in curves.items():
            ax.plot(np.arange(1, len(values) + 1), np.maximum.accumulate(values),
                    label=LABELS[method])
        ax.axhline(j_start, color="gray", ls=":", label="misaligned start")
        ax.set_xlabel("camera frames (evaluations)")
        ax.set_ylabel("best flux density so far (counts/s/um$^2$)")
        ax.set_title("Optics alignment on the simulated beamline, same start")
        ax.legend(fontsize=8)
        fig.savefig(self.out / "alignment.png", dpi=90)
        plt.close(fig)

    def summary(self, j_start, curves, finals, walls, dark, n_motors) -> dict:
        best_any = max(max(v) for v in curves.values() if v)
        out = {"optics motors": n_motors, "dark rate": f"{dark:.1f} counts/s/pixel",
               "start flux density": f"{j_start:.4g} counts/s/um^2"}
        for method, values in curves.items():
            best = np.maximum.accumulate(values)
            hit = np.nonzero(best >= 0.95 * best_any)[0]
            reached = f"{hit[0] + 1} frames" if hit.size else "never"
            out[LABELS[method]] = (
                f"final {finals[method]:.4g} ({finals[method] / j_start:.1f}x start), "
                f"{len(values)} frames, 95 % of the best of all methods after {reached}, "
                f"{walls[method]:.0f} s")
        out["figure"] = str(self.out / "alignment.png")
        out["documents"] = str(self.out / "documents")
        return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}
