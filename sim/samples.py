"""Hidden 2-D samples over the sample stage travel, and the 1-D XAS sample.

Ground truth for tests and benchmarks (never reachable through PVs)::

    s = make_sample("particles", seed=0)
    s.signal(x_mm, y_mm, energy_ev)   # numpy-broadcast, values in [0, ~1]
    xs, ys, z = truth_grid(s, n=201)  # z[i, j] is the signal at (xs[j], ys[i])

How the detector combines map and energy: a *map* sample (particles, domains,
phase_boundary) is energy independent, ``signal = map(x, y)``; the ``xas`` sample is
position independent, ``signal = mu(E)`` (see :mod:`sim.xas`). The detector rate is
``det_cps * signal`` (see :mod:`sim.physics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.errors import SimConfigError
from sim.xas import CuKEdge

Extent = tuple[float, float, float, float]  # x_low, x_high, y_low, y_high (mm)
DEFAULT_EXTENT: Extent = (-10.0, 10.0, -10.0, 10.0)


class Sample(Protocol):
    name: str

    def signal(self, x, y, energy=None) -> np.ndarray:
        """Signal in [0, ~1] at positions x, y (mm) and energy (eV); broadcasts."""


def _shape(x, y, energy) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    e = np.asarray(8900.0 if energy is None else energy, float)
    return x, y, np.broadcast_shapes(x.shape, y.shape, e.shape)


@dataclass(frozen=True)
class Particles:
    """Localized Gaussian blobs (sigma 0.15-0.45 mm) on a weak background."""

    centres: np.ndarray  # (n, 2) mm
    sigmas: np.ndarray  # (n,) mm
    heights: np.ndarray  # (n,)
    background: float = 0.02
    name: str = "particles"

    def signal(self, x, y, energy=None) -> np.ndarray:
        x, y, shape = _shape(x, y, energy)
        out = np.full(np.broadcast_shapes(x.shape, y.shape), self.background)
        for (cx, cy), s, h in zip(self.centres, self.sigmas, self.heights, strict=True):
            out = out + h * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
        return np.broadcast_to(np.clip(out, 0.0, None), shape)


@dataclass(frozen=True)
class Domains:
    """Voronoi domains with distinct levels (sharp walls)."""

    seeds: np.ndarray  # (n, 2) mm
    levels: np.ndarray  # (n,)
    name: str = "domains"

    def signal(self, x, y, energy=None) -> np.ndarray:
        x, y, shape = _shape(x, y, energy)
        from scipy.spatial import cKDTree  # lazy: keeps IOC start-up ~0.3 s faster

        xb, yb = np.broadcast_arrays(x, y)
        _, idx = cKDTree(self.seeds).query(np.stack([xb.ravel(), yb.ravel()], axis=1))
        return np.broadcast_to(self.levels[idx].reshape(xb.shape), shape)


@dataclass(frozen=True)
class PhaseBoundary:
    """A composition gradient along x with a sharp phase step along a curved line.

    Boundary: ``y_b(x) = y0 + a sin(2 pi x / period)``; above it the signal jumps by ``step``.
    """

    y0: float
    amplitude: float
    period: float
    step: float = 0.6
    x_span: float = 20.0
    name: str = "phase_boundary"

    def signal(self, x, y, energy=None) -> np.ndarray:
        x, y, shape = _shape(x, y, energy)
        gradient = 0.1 + 0.2 * (x / self.x_span + 0.5)
        boundary = self.y0 + self.amplitude * np.sin(2 * np.pi * x / self.period)
        return np.broadcast_to(gradient + self.step * (y > boundary), shape)


@dataclass(frozen=True)
class XasSample:
    """Position-independent absorption: ``signal = mu(E)`` of a Cu K edge."""

    edge: CuKEdge
    name: str = "xas"

    def signal(self, x, y, energy=None) -> np.ndarray:
        x, y, shape = _shape(x, y, energy)
        e = np.asarray(8900.0 if energy is None else energy, float)
        return np.broadcast_to(self.edge.mu(e), shape)


def make_sample(name: str, seed: int = 0, extent: Extent = DEFAULT_EXTENT) -> Sample:
    """The hidden sample ``name`` with geometry drawn from ``seed`` inside ``extent`` (mm).

    Raises:
        SimConfigError: unknown sample name (lists the known ones).
    """
    rng = np.random.default_rng([seed, 0x5A4D])  # geometry stream, independent of noise
    x0, x1, y0, y1 = extent
    if name == "particles":
        n = 12
        centres = np.column_stack([rng.uniform(x0 + 1, x1 - 1, n), rng.uniform(y0 + 1, y1 - 1, n)])
        return Particles(centres, rng.uniform(0.15, 0.45, n), rng.uniform(0.4, 1.0, n))
    if name == "domains":
        n = 14
        seeds = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
        return Domains(seeds, rng.permutation(np.linspace(0.1, 1.0, n)))
    if name == "phase_boundary":
        return PhaseBoundary(
            y0=rng.uniform(0.2, 0.4) * (y1 - y0) + y0 + 0.1 * (y1 - y0),
            amplitude=rng.uniform(0.1, 0.2) * (y1 - y0),
            period=rng.uniform(0.6, 1.2) * (x1 - x0),
            x_span=x1 - x0,
        )
    if name == "xas":
        return XasSample(CuKEdge())
    raise SimConfigError(
        f"unknown sample {name!r}; known: particles, domains, phase_boundary, xas"
    )


def truth_grid(
    sample: Sample, n: int = 201, extent: Extent = DEFAULT_EXTENT, energy: float = 8900.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth on an n x n grid: ``(xs (n,), ys (n,), z (n, n))`` with ``z[i, j]`` at
    ``(xs[j], ys[i])``."""
    xs = np.linspace(extent[0], extent[1], n)
    ys = np.linspace(extent[2], extent[3], n)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.asarray(sample.signal(gx, gy, energy), float)
