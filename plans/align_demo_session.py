"""The align-demo's RunEngine session: connect, measure the dark rate, align with each method
from the same start, re-measure, plot. Imported only after the CA environment is set."""

from __future__ import annotations

import argparse
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
from plans.align_strategies import progressive_align, sequential_align  # noqa: E402
from plans.objective import FluxDensity, measure_dark  # noqa: E402
from plans.tasks import run_coroutine  # noqa: E402
from sim.config import load_config  # noqa: E402
from sim.optics_train import OPTICS_KINDS, OpticsTrain  # noqa: E402

ZOOM_PX = 40  # camera pixels shown around the spot in the figure
LABELS = {"bo": "align (trust-region BO, gpCAM)",
          "progressive": "progressive_align (element by element, then global)",
          "sequential": "sequential 1-D rel_scans",
          "nelder_mead": "Nelder-Mead (scipy)"}


class EvaluationProgress(CallbackBase):
    """Collects the objective and motor readbacks of every primary event (across runs) and
    prints progress."""

    def __init__(self, label: str, field: str, expected: int, start: dict[str, float]):
        super().__init__()
        self.label, self.field, self.expected = label, field, max(1, expected)
        self._here = dict(start)  # a 1-D scan's events hold only the motor it moves
        self.values: list[float] = []
        self.positions: list[list[float]] = []
        self._primary: set[str] = set()
        self._t0 = time.monotonic()

    def descriptor(self, doc):
        if doc.get("name") == "primary":
            self._primary.add(doc["uid"])

    def event(self, doc):
        if doc["descriptor"] in self._primary and self.field in doc["data"]:
            self.values.append(float(doc["data"][self.field]))
            self._here.update({m: float(doc["data"][m]) for m in self._here if m in doc["data"]})
            self.positions.append(list(self._here.values()))
            k = len(self.values)
            if k % max(1, self.expected // 10) == 0 or k == self.expected:
                print(f"  {self.label}: frame {k}/{self.expected}  best {max(self.values):.4g}"
                      f"  elapsed {time.monotonic() - self._t0:5.1f} s", flush=True)


class AlignDemoSession:
    def __init__(self, beamline_yaml: Path, out: Path, args: argparse.Namespace):
        self.out, self.args = out, args
        self.config = load_beamline_config(beamline_yaml)
        full = load_config(beamline_yaml)  # the hidden truth, for scoring only
        self.j_star = OpticsTrain(full.beamline, full.simulation.optics,
                                  full.simulation.seed).j_star
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
        frames = {"start": self.frame(bl)}
        print(f"  {len(motors)} optics motors connected; dark {dark:.1f} counts/s/pixel; "
              f"start flux density {j_start:.4g} counts/s/um^2 "
              f"({j_start / self.j_star:.1%} of the optimum)")
        runs = {}
        for method in self.args.methods:
            self.RE(bps.mv(*[x for m in motors for x in (m, start[m.name])]))
            progress = EvaluationProgress(method, det.name, self.args.evaluations, start)
            t0 = time.monotonic()
            self.RE(self.plan(method, det, motors),
                    [JSONLinesWriter(str(self.out / "documents")), progress])
            final = self.measure(det)  # at the positions the method ends at
            frames[method] = self.frame(bl)
            runs[method] = {"values": progress.values, "final": final,
                            "wall_s": time.monotonic() - t0,
                            "travel": self.travel(progress.positions, start, motors)}
        self.figure(runs, j_start, frames, camera)
        return self.summary(j_start, runs, dark, len(motors))

    def frame(self, bl) -> np.ndarray:
        """The camera's last image, (size_y, size_x) counts."""
        return np.asarray(self.RE(run_coroutine(bl.beam_camera.frame)).plan_result)

    def travel(self, positions: list[list[float]], start: dict, motors) -> float:
        """Total motor travel, in motor ranges summed over motors."""
        spans = np.array([self.config.motor(m.name).span for m in motors])
        path = np.vstack([[start[m.name] for m in motors], *positions]) / spans
        return float(np.abs(np.diff(path, axis=0)).sum())

    def plan(self, method: str, det, motors):
        n = self.args.evaluations
        if method == "bo":
            return align([det], *motors, value=det.name, max_evaluations=n)
        if method == "progressive":
            by_name = {m.name: m for m in motors}
            stages = [[by_name[m.name] for m in element.motors]
                      for element in self.config.of_kind(*OPTICS_KINDS)]
            per_stage = n // (2 * len(stages))
            return progressive_align([det], stages, value=det.name,
                                     stage_evaluations=per_stage,
                                     patience=max(3, per_stage // 2),
                                     global_evaluations=n - per_stage * len(stages))
        if method == "nelder_mead":
            return align([det], *motors, value=det.name, max_evaluations=n,
                         optimiser="nelder_mead")
        # two passes when each 1-D scan can still have 5 points, else one; within the budget
        passes = 2 if n >= 2 * 5 * len(motors) else 1
        return sequential_align([det], *motors, value=det.name, passes=passes,
                                num=max(3, n // (passes * len(motors))))

    def figure(self, runs: dict, j_start: float, frames: dict, camera) -> None:
        """Best-so-far J / J* per method; below, the camera frame at the start and at each
        method's end, zoomed on the spot (ZOOM_PX pixels around the brightest pixel)."""
        fig = plt.figure(figsize=(3 * len(frames), 7.5), layout="constrained")
        grid = fig.add_gridspec(2, len(frames), height_ratios=[1.4, 1])
        ax = fig.add_subplot(grid[0, :])
        for method, run in runs.items():
            values = np.asarray(run["values"]) / self.j_star
            ax.plot(np.arange(1, len(values) + 1), np.maximum.accumulate(values),
                    label=LABELS[method])
        ax.axhline(j_start / self.j_star, color="gray", ls=":", label="misaligned start")
        ax.axhline(0.95, color="k", lw=0.5, ls="--", label="95 % of the optimum")
        ax.set_xlabel("camera frames (evaluations)")
        ax.set_ylabel("best flux density so far / optimum")
        ax.set_title("Optics alignment from one misaligned start", fontsize=10)
        ax.legend(fontsize=8)
        for k, (name, image) in enumerate(frames.items()):
            axi = fig.add_subplot(grid[1, k])
            iy, ix = np.unravel_index(int(np.argmax(image)), image.shape)
            y0, x0 = max(0, iy - ZOOM_PX // 2), max(0, ix - ZOOM_PX // 2)
            crop = image[y0:y0 + ZOOM_PX, x0:x0 + ZOOM_PX]
            px = camera.pixel_um
            axi.imshow(crop, origin="lower", cmap="magma", extent=[
                x0 * px, (x0 + crop.shape[1]) * px, y0 * px, (y0 + crop.shape[0]) * px])
            axi.set_title(f"{name}: max {int(image.max())} counts", fontsize=9)
            axi.set_xlabel("x on the camera (um)")
        fig.savefig(self.out / "alignment.png", dpi=90)
        plt.close(fig)

    def summary(self, j_start: float, runs: dict, dark: float, n_motors: int) -> dict:
        out = {"optics motors": n_motors, "dark rate": f"{dark:.1f} counts/s/pixel",
               "optimum (hidden truth)": f"{self.j_star:.4g} counts/s/um^2",
               "start": f"{j_start / self.j_star:.1%} of the optimum"}
        for method, run in runs.items():
            best = np.maximum.accumulate(np.asarray(run["values"]) / self.j_star)
            hit = np.nonzero(best >= 0.95)[0]
            reached = f"after {hit[0] + 1} frames" if hit.size else "not reached"
            out[LABELS[method]] = (
                f"final {run['final'] / self.j_star:.1%} of the optimum (re-measured), "
                f"95 % {reached}, {len(run['values'])} frames, travel "
                f"{run['travel']:.1f} ranges, {run['wall_s']:.0f} s")
        out["figure"] = str(self.out / "alignment.png")
        out["documents"] = str(self.out / "documents")
        return out
