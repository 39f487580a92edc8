"""Mechanics of one simulated stage, in mechanical coordinates (no EPICS here).

Mechanical coordinate = dial coordinate at IOC start (= user coordinate with OFF=0, DIR=Pos);
the hidden physics uses it, so re-calibrating a motor (SET) never moves the sample.

- The *motor* moves at VELO; the *load* (what the encoder, hence RBV, reads) follows it with
  ``backlash_egu`` of slack: after a reversal the first ``backlash`` of motor travel does not
  move the load. The record's encoder-corrected retries (RTRY) take the slack up.
- A *stall* stops the load short: at the edge of a stall region, or (with ``probability``)
  after ``1 - shortfall_fraction`` of the move. Retries cannot cross a stall region.
- Hard travel ends (limit switches) sit a little beyond the configured soft limits.
"""

from __future__ import annotations

import numpy as np

from sim.config import MotorSimConfig


class Mechanics:
    """Positions of motor and load along one axis, in mechanical egu."""

    def __init__(self, position: float, cfg: MotorSimConfig, hard_low: float, hard_high: float,
                 rng: np.random.Generator):
        self.cfg = cfg
        self.motor = position
        self.load = position
        self.hard_low = hard_low
        self.hard_high = hard_high
        self.rng = rng

    def plan_end(self, target: float) -> float:
        """Where the motor will stop for a move from here to ``target`` (stalls applied)."""
        start = self.motor
        end = target
        for lo, hi in self.cfg.stall.regions:
            if end > start and lo < end and hi > start:  # moving up into it: stop at low edge
                end = min(end, max(start, lo))
            elif end < start and hi > end and lo < start:  # moving down: stop at high edge
                end = max(end, min(start, hi))
        if self.cfg.stall.probability and self.rng.random() < self.cfg.stall.probability:
            end = start + (end - start) * (1.0 - self.cfg.stall.shortfall_fraction)
        return end

    def advance(self, end: float, max_step: float) -> tuple[bool, int]:
        """Move the motor up to ``max_step`` toward ``end``.

        Returns (arrived, switch): switch is +1/-1 if a hard end (limit switch) was hit, else 0.
        """
        delta = float(np.clip(end - self.motor, -max_step, max_step))
        self.motor += delta
        switch = 0
        if self.motor >= self.hard_high:
            self.motor, switch = self.hard_high, 1
        elif self.motor <= self.hard_low:
            self.motor, switch = self.hard_low, -1
        half = self.cfg.backlash_egu / 2.0
        self.load = float(np.clip(self.load, self.motor - half, self.motor + half))
        return (abs(end - self.motor) < 1e-12) or switch != 0, switch

    def readback(self) -> float:
        """Encoder reading of the load, with jitter (egu)."""
        if self.cfg.jitter_egu:
            return self.load + float(self.rng.normal(0.0, self.cfg.jitter_egu))
        return self.load

    def switches(self) -> tuple[int, int]:
        """(low, high) limit-switch states in mechanical direction."""
        return int(self.motor <= self.hard_low), int(self.motor >= self.hard_high)
