"""Camera frames of the optics model at a misaligned start (+-20 %, seed 0) and at the
optimum, full sensor and a 40 x 40 px zoom: ``results/optics_frames.png``.

    .venv/bin/python benchmarks/plot_optics_frames.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script: the backend is set here, never in a library module
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sim.optics import OpticsModel, default_bounds  # noqa: E402
from sim.optics.camera import nd_stats, render  # noqa: E402
from sim.optics.scoring import find_optimum, misaligned_start  # noqa: E402

OUT = Path(__file__).parent / "results" / "optics_frames.png"


def main() -> None:
    model, bounds = OpticsModel(), default_bounds()
    pos, j_star = find_optimum(model, bounds)
    start = misaligned_start(model, bounds, pos, 0.2, np.random.default_rng(0))
    cam = model.params.camera
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, (label, p) in enumerate((("misaligned start", start), ("optimum", pos))):
        img = render(model.beam(p), cam, 0.01, np.random.default_rng(1))
        s = nd_stats(img, 5.0)
        title = (f"{label}: J/J* = {model.objective(p) / j_star:.3f}, Total {s['total']:.0f}, "
                 f"max {s['max_value']:.0f}")
        axes[row, 0].imshow(img, origin="lower", cmap="magma")
        axes[row, 0].set_title(title, fontsize=9)
        cx, cy = int(round(s["centroid_x"])), int(round(s["centroid_y"]))
        y0, x0 = max(cy - 20, 0), max(cx - 20, 0)
        axes[row, 1].imshow(img[y0:y0 + 40, x0:x0 + 40], origin="lower", cmap="magma",
                            extent=(x0 - 0.5, x0 + 39.5, y0 - 0.5, y0 + 39.5))
        axes[row, 1].set_title(f"zoom: sigma {s['sigma_x']:.2f} x {s['sigma_y']:.2f} px "
                               f"({cam.pixel_um} um/px)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
