"""A batch of Gaussian beams in phase space and the two primitive operations on them.

State (OPTICS.md): mean ``mu`` of (x, x', y, y') in m and rad, covariance ``S`` (4 x 4),
flux ``F`` in photons/s. Arrays carry a leading batch axis ``n`` so that one call
propagates ``n`` motor settings at once (``mu`` (n, 4), ``S`` (n, 4, 4), ``F`` (n,)).

- linear map ``M`` with constant ``b``: ``mu -> M mu + b``, ``S -> M S M^T``;
- Gaussian aperture of rms ``a`` centred at ``c`` on the coordinate ``e . (x, x', y, y')``:
  with ``d = e^T S e + a^2``, transmission ``T = sqrt(a^2/d) exp(-(e.mu - c)^2 / (2d))``
  (always <= 1), ``mu += S e (c - e.mu)/d``, ``S -= S e e^T S / d`` (the Gaussian product;
  OPTICS.md, "Aperture").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

X, XP, Y, YP = 0, 1, 2, 3


@dataclass
class Beams:
    """``n`` Gaussian beams: ``mu`` (n, 4) m/rad, ``S`` (n, 4, 4), ``flux`` (n,) photons/s."""

    mu: np.ndarray
    S: np.ndarray
    flux: np.ndarray

    @classmethod
    def source(cls, n: int, sigmas: tuple[float, float, float, float], flux: float) -> Beams:
        """Uncorrelated source of rms (x, x', y, y') ``sigmas`` (m, rad) at its waist."""
        S = np.broadcast_to(np.diag(np.square(sigmas)), (n, 4, 4)).copy()
        return cls(np.zeros((n, 4)), S, np.full(n, float(flux)))


def transform(beams: Beams, M: np.ndarray, b: np.ndarray | None = None) -> None:
    """In place: ``mu = M mu + b``, ``S = M S M^T``; ``M`` is (4, 4) or (n, 4, 4)."""
    beams.mu = (M @ beams.mu[:, :, None])[:, :, 0]
    if b is not None:
        beams.mu = beams.mu + b
    beams.S = M @ beams.S @ np.swapaxes(M, -1, -2)


def drift(beams: Beams, length_m: float) -> None:
    """In place free flight: ``x += L x'``, ``y += L y'``."""
    M = np.eye(4)
    M[X, XP] = M[Y, YP] = length_m
    transform(beams, M)


def aperture(beams: Beams, e: np.ndarray, centre: np.ndarray, rms: np.ndarray,
             transmission: np.ndarray | None = None) -> np.ndarray:
    """In place Gaussian aperture (module doc); returns the transmission (n,) applied.

    ``e`` (4,) or (n, 4) selects the coordinate. ``transmission`` overrides the Gaussian
    flux factor (e.g. the hard-edge erf form of a slit) while the moments stay Gaussian.
    """
    e = np.broadcast_to(e, beams.mu.shape)
    Se = np.einsum("nij,nj->ni", beams.S, e)
    d = np.einsum("ni,ni->n", e, Se) + rms**2
    offset = centre - np.einsum("ni,ni->n", e, beams.mu)
    if transmission is None:
        transmission = np.sqrt(rms**2 / d) * np.exp(-(offset**2) / (2 * d))
    beams.mu = beams.mu + Se * (offset / d)[:, None]
    beams.S = beams.S - np.einsum("ni,nj->nij", Se, Se) / d[:, None, None]
    beams.flux = beams.flux * transmission
    return transmission
