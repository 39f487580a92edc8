"""Absorption coefficient mu(E) near the Cu K edge (a shape model, not tabulated data).

mu(E) = pre + step(E) * (1 + chi(E)) + white line, normalised so the post-edge is ~1.
- Edge energy E0 = 8979 eV: Cu K-edge energy from the X-ray Data Booklet (LBNL), table 1-1.
- step: arctan broadened by the core-hole width (~1.5 eV for Cu K, Krause & Oliver 1979).
- chi(k): a few damped sine shells, k = sqrt(0.2625 (E - E0)) 1/Angstrom (0.2625 = 2 m_e / hbar^2
  in eV^-1 Angstrom^-2); shell distances near Cu-Cu 2.55 Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K_FACTOR = 0.2625  # 2 m_e / hbar^2, 1/(eV Angstrom^2)


@dataclass(frozen=True)
class CuKEdge:
    e0_ev: float = 8979.0
    width_ev: float = 1.5
    pre_edge: float = 0.05
    white_line: float = 0.35
    white_line_offset_ev: float = 9.0
    white_line_width_ev: float = 4.0
    shells: tuple[tuple[float, float], ...] = ((2.55, 0.25), (3.61, 0.10), (4.43, 0.08))
    debye_waller_a2: float = 0.008

    def mu(self, energy_ev) -> np.ndarray:
        """mu(E), dimensionless, for energies in eV (any shape)."""
        e = np.asarray(energy_ev, float)
        de = e - self.e0_ev
        step = 0.5 + np.arctan(de / self.width_ev) / np.pi
        peak = self.white_line * np.exp(
            -0.5 * ((de - self.white_line_offset_ev) / self.white_line_width_ev) ** 2
        )
        return self.pre_edge + step * (1.0 + self.chi(e)) + peak

    def chi(self, energy_ev) -> np.ndarray:
        """EXAFS oscillation chi(E): zero below the edge, damped sines above."""
        de = np.asarray(energy_ev, float) - self.e0_ev
        k = np.sqrt(K_FACTOR * np.clip(de, 0.0, None))
        out = np.zeros_like(k)
        for r, amp in self.shells:
            out += amp * np.sin(2 * k * r) * np.exp(-2 * self.debye_waller_a2 * k**2) / (1 + k)
        # fade in over the first ~15 eV so the edge itself stays monotonic
        return out * (1 - np.exp(-np.clip(de, 0.0, None) / 15.0))
