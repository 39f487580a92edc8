"""Counting model of the scaler channels: Poisson counts from flux, exposure and sample.

Means over an exposure of ``t`` seconds with ring fraction ``f = I_ring / I_nominal`` and
shutter ``s`` (1 open, 0 closed):

- I0:   lambda = (i0_cps * f * s * T + dark_cps) * t
- det:  lambda = (det_cps * f * s * T * <signal>(x, y, E) + dark_cps) * t

``T`` is the optics transmission relative to the aligned optics (1 without optics) and
``<signal>`` the sample signal averaged over the beam spot: a Gaussian of rms
``(spot_x, spot_y)`` mm, integrated with 3 x 3 Gauss-Hermite nodes (exact for polynomials
of degree 5 in each axis), so a large, defocused spot blurs sharp features.

Counts ~ Poisson(lambda), drawn from one numpy Generator seeded by ``simulation.seed``, so a
given sequence of counts is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import FluxConfig
from sim.samples import Sample

# probabilists' Gauss-Hermite rule: E[f(Z)], Z ~ N(0, 1) = sum w_i f(z_i)
_GH_NODES, _gh_w = np.polynomial.hermite_e.hermegauss(3)
_GH_WEIGHTS_2D = np.outer(_gh_w, _gh_w).ravel() / _gh_w.sum() ** 2


@dataclass(frozen=True)
class Exposure:
    """Conditions of one count: seconds, ring fraction, shutter, beam position."""

    time_s: float
    ring_fraction: float
    shutter_open: bool
    x: float
    y: float
    energy_ev: float
    transmission: float = 1.0
    spot_x_mm: float = 0.0
    spot_y_mm: float = 0.0


class CountModel:
    """Expected and sampled counts for the i0 and det channels."""

    def __init__(self, flux: FluxConfig, sample: Sample, seed: int):
        self.flux = flux
        self.sample = sample
        self.rng = np.random.default_rng([seed, 0xC0])  # noise stream

    def mean_counts(self, exp: Exposure) -> dict[str, float]:
        """Expected counts ``{"i0": ..., "det": ...}`` for one exposure."""
        beam = exp.ring_fraction * (1.0 if exp.shutter_open else 0.0)
        beam *= exp.transmission
        sig = self.spot_signal(exp)
        dark = self.flux.dark_cps * exp.time_s
        return {
            "i0": self.flux.i0_cps * beam * exp.time_s + dark,
            "det": self.flux.det_cps * beam * sig * exp.time_s + dark,
        }

    def spot_signal(self, exp: Exposure) -> float:
        """The sample signal averaged over the beam spot (module doc)."""
        if exp.spot_x_mm <= 0 and exp.spot_y_mm <= 0:
            return float(self.sample.signal(exp.x, exp.y, exp.energy_ev))
        dx, dy = np.meshgrid(_GH_NODES * exp.spot_x_mm, _GH_NODES * exp.spot_y_mm)
        sig = self.sample.signal(exp.x + dx.ravel(), exp.y + dy.ravel(), exp.energy_ev)
        return float(np.sum(np.ravel(sig) * _GH_WEIGHTS_2D))

    def sample_counts(self, exp: Exposure) -> dict[str, int]:
        """Poisson draws of :meth:`mean_counts`."""
        return {k: int(self.rng.poisson(v)) for k, v in self.mean_counts(exp).items()}
