"""Counting model of the scaler channels: Poisson counts from flux, exposure and sample.

Means over an exposure of ``t`` seconds with ring fraction ``f = I_ring / I_nominal`` and
shutter ``s`` (1 open, 0 closed):

- I0:   lambda = (i0_cps * f * s + dark_cps) * t
- det:  lambda = (det_cps * f * s * signal(x, y, E) + dark_cps) * t

Counts ~ Poisson(lambda), drawn from one numpy Generator seeded by ``simulation.seed``, so a
given sequence of counts is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import FluxConfig
from sim.samples import Sample


@dataclass(frozen=True)
class Exposure:
    """Conditions of one count: seconds, ring fraction, shutter, beam position."""

    time_s: float
    ring_fraction: float
    shutter_open: bool
    x: float
    y: float
    energy_ev: float


class CountModel:
    """Expected and sampled counts for the i0 and det channels."""

    def __init__(self, flux: FluxConfig, sample: Sample, seed: int):
        self.flux = flux
        self.sample = sample
        self.rng = np.random.default_rng([seed, 0xC0])  # noise stream

    def mean_counts(self, exp: Exposure) -> dict[str, float]:
        """Expected counts ``{"i0": ..., "det": ...}`` for one exposure."""
        beam = exp.ring_fraction * (1.0 if exp.shutter_open else 0.0)
        sig = float(self.sample.signal(exp.x, exp.y, exp.energy_ev))
        dark = self.flux.dark_cps * exp.time_s
        return {
            "i0": self.flux.i0_cps * beam * exp.time_s + dark,
            "det": self.flux.det_cps * beam * sig * exp.time_s + dark,
        }

    def sample_counts(self, exp: Exposure) -> dict[str, int]:
        """Poisson draws of :meth:`mean_counts`."""
        return {k: int(self.rng.poisson(v)) for k, v in self.mean_counts(exp).items()}
