"""The demo's figure: truth, raster at equal beamtime, the agent's posterior, and its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: CI and ssh sessions have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from plans.scoring import Truth  # noqa: E402


def _image(ax, z, truth: Truth, title: str, vmin=None, vmax=None, cmap="viridis"):
    extent = [truth.xs[0], truth.xs[-1], truth.ys[0], truth.ys[-1]]
    im = ax.imshow(z, origin="lower", extent=extent, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("sample_x (mm)")
    ax.set_ylabel("sample_y (mm)")
    plt.colorbar(im, ax=ax, fraction=0.046)


def write_figure(path: Path, truth: Truth, raster: np.ndarray, raster_points: np.ndarray,
                 mean: np.ndarray, std: np.ndarray, points: np.ndarray, summary: dict) -> Path:
    """Six panels: truth, raster map, posterior mean, posterior std, path, numbers."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.5), layout="constrained")
    lo, hi = float(truth.z.min()), float(truth.z.max())
    _image(axes[0, 0], truth.z, truth, "ground truth (det/i0)", lo, hi)
    _image(axes[0, 1], raster, truth,
           f"raster grid, equal beamtime: {len(raster_points)} points", lo, hi)
    axes[0, 1].plot(*raster_points.T, "w.", ms=2)
    _image(axes[0, 2], mean, truth, f"agent posterior mean: {len(points)} points", lo, hi)
    _image(axes[1, 0], std, truth, "agent posterior std (uncertainty)", cmap="magma")
    _image(axes[1, 1], truth.z, truth, "measured points and path travelled", lo, hi, "gray")
    axes[1, 1].plot(*points.T, "-", color="tab:orange", lw=0.6, alpha=0.8)
    axes[1, 1].scatter(*points.T, c=np.arange(len(points)), cmap="plasma", s=10, zorder=3)
    axes[1, 2].axis("off")
    axes[1, 2].text(0.0, 1.0, "\n".join(f"{k}: {v}" for k, v in summary.items()),
                    va="top", family="monospace", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
