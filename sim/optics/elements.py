"""The optical elements as in-place operations on :class:`sim.optics.beam.Beams`.

Every DOF argument is an array (n,) in SI units (m, rad, 1/m). Frame: the beam's nominal
axis, unfolded at each reflection (the reflection's parity flip is omitted; it would only
change the sign of where an optimum sits). Formulas and sources are in OPTICS.md.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from sim.optics.beam import XP, YP, Beams, X, Y, aperture, transform

SI111_D_ANGSTROM = 3.1355  # Si(111) lattice spacing
HC_KEV_ANGSTROM = 12.398420  # lambda [A] = hc / E
#: two-crystal Si(111) rocking-curve FWHM, urad, computed with xrt (OPTICS.md)
ROCKING_FWHM_URAD = ((8.0, 49.5), (10.0, 38.8), (12.0, 31.9))
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def wavelength_m(energy_kev: float) -> float:
    """Photon wavelength, m: lambda = hc / E."""
    return HC_KEV_ANGSTROM / energy_kev * 1e-10


def bragg_angle_rad(energy_kev: float, d_angstrom: float = SI111_D_ANGSTROM) -> float:
    """Bragg's law lambda = 2 d sin(theta_B); 11.40 deg for Si(111) at 10 keV."""
    return float(np.arcsin(wavelength_m(energy_kev) * 1e10 / (2.0 * d_angstrom)))


def rocking_fwhm_rad(energy_kev: float) -> float:
    """Two-crystal rocking-curve FWHM, interpolated in the xrt table (38.8 urad at 10 keV)."""
    e, w = zip(*ROCKING_FWHM_URAD, strict=True)
    return float(np.interp(energy_kev, e, w)) * 1e-6


def dcm(beams: Beams, detune: np.ndarray, roll: np.ndarray, energy_kev: float) -> None:
    """Second-crystal pitch detune ``delta`` and roll ``chi`` (rad) of a DCM (OPTICS.md):

    - flux x exp(-delta^2 / (2 s^2)), s = FWHM / 2.355 (Gaussian rocking curve);
    - exit beam tilted by 2 delta in the diffraction (vertical) plane: y' += 2 delta;
    - roll steers sideways: x' += chi sin(2 theta_B).
    """
    s = rocking_fwhm_rad(energy_kev) / FWHM_PER_SIGMA
    beams.flux = beams.flux * np.exp(-(detune**2) / (2 * s * s))
    beams.mu[:, YP] += 2.0 * detune
    beams.mu[:, XP] += roll * np.sin(2.0 * bragg_angle_rad(energy_kev))


def slit(beams: Beams, centre: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Horizontal slit (centre, gap in m). Flux: the hard-edge erf transmission of the
    Gaussian, 1/2 [erf((g/2 - d)/(sqrt2 s)) + erf((g/2 + d)/(sqrt2 s))] with d the beam's
    offset from the centre and s its rms; moments: Gaussian aperture a = g / sqrt(2 pi)
    (OPTICS.md). Returns the transmission (n,), in [0, 1]."""
    g = np.maximum(gap, 1e-9)
    s = np.sqrt(2.0 * beams.S[:, X, X])
    d = beams.mu[:, X] - centre
    t = 0.5 * (erf((g / 2 - d) / s) + erf((g / 2 + d) / s))
    t = np.clip(t, 0.0, 1.0) * (gap > 0)
    return aperture(beams, np.eye(4)[X], centre, g / np.sqrt(2 * np.pi), transmission=t)


def _normal(plane: str, roll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror normal in (x, y): the nominal one of ``plane`` rotated by ``roll`` (n, 2)."""
    n0 = np.array([0.0, 1.0]) if plane == "y" else np.array([1.0, 0.0])
    c, s = np.cos(roll), np.sin(roll)
    n = np.stack([c * n0[0] - s * n0[1], s * n0[0] + c * n0[1]], axis=1)
    return n0, n


def mirror(beams: Beams, plane: str, theta0: float, length_m: float, power: np.ndarray,
           dtheta: np.ndarray, height: np.ndarray, roll: np.ndarray,
           slope_error_rad: float = 0.0, coma: np.ndarray | None = None) -> np.ndarray:
    """A bent focusing mirror focusing in ``plane`` ("x" or "y"); returns its transmission.

    - ``power`` (1/m) is the focal power 1/p + 1/q at the nominal angle ``theta0``; the bent
      shape is fixed, so f = R sin(theta) / 2 scales with the grazing angle
      theta = theta0 + dtheta (Coddington: 1/p + 1/q = 2 / (R sin theta)): pitch couples
      to focus.
    - acceptance: Gaussian aperture rms L sin(theta) / sqrt(2 pi) centred on the height h.
    - lens about the mirror's axis: angles -= P n n^T (r - h n), where the normal n is the
      nominal one rotated by the roll phi (K = (1/f) R(phi) diag(0, 1) R(phi)^T); so a
      height h kicks the beam by h / f.
    - steering: positions -= 2 h n; angles -= 2 dtheta n, and += 2 theta (n - n0) (a roll
      steers the other plane by about 2 theta phi). The minus signs are the reflection seen
      in the unflipped frame (y_out = 2h - y in the folded one), so the 2h shift and the
      h/f kick oppose: the focus moves by about -h (1 - q/p), as a rigid ellipse would.
    - slope error: (2 sigma_slope)^2 added to the angular variance along n.
    - ``coma`` a3 (1/m^2): a cubic figure term z = a3 u^3 over the footprint u ~ N(m, s^2)
      along the mirror, linearised: mean deflection 6 a3 (m^2 + s^2) (centroid shift),
      focal power -12 a3 m / sin(theta), residual angular variance 72 a3^2 s^4.
    """
    theta = theta0 + dtheta
    n0, n = _normal(plane, roll)
    e = np.zeros((len(theta), 4))
    e[:, X], e[:, Y] = n[:, 0], n[:, 1]
    t = aperture(beams, e, height, length_m * np.sin(theta) / np.sqrt(2 * np.pi))
    p_tot = power * np.sin(theta0) / np.sin(theta)
    extra_var = np.full(len(theta), (2.0 * slope_error_rad) ** 2)
    kick = -2.0 * dtheta
    if coma is not None:
        foot_m = (np.einsum("ni,ni->n", e, beams.mu) - height) / np.sin(theta)
        foot_s2 = np.einsum("ni,nij,nj->n", e, beams.S, e) / np.sin(theta) ** 2
        kick = kick + 6.0 * coma * (foot_m**2 + foot_s2)
        p_tot = p_tot - 12.0 * coma * foot_m / np.sin(theta)
        extra_var = extra_var + 72.0 * coma**2 * foot_s2**2
    _lens(beams, p_tot, n, height)
    beams.mu[:, [X, Y]] -= 2.0 * height[:, None] * n
    beams.mu[:, [XP, YP]] += kick[:, None] * n + 2.0 * theta[:, None] * (n - n0)
    beams.S[:, XP::2, XP::2] += extra_var[:, None, None] * np.einsum("ni,nj->nij", n, n)
    return t


def _lens(beams: Beams, power: np.ndarray, n: np.ndarray, height: np.ndarray) -> None:
    """Thin lens of focal power ``power`` along ``n`` about the axis at ``height * n``."""
    K = power[:, None, None] * np.einsum("ni,nj->nij", n, n)
    M = np.broadcast_to(np.eye(4), K.shape[:1] + (4, 4)).copy()
    M[:, XP, X], M[:, XP, Y] = -K[:, 0, 0], -K[:, 0, 1]
    M[:, YP, X], M[:, YP, Y] = -K[:, 1, 0], -K[:, 1, 1]
    b = np.zeros((len(power), 4))
    b[:, XP], b[:, YP] = power * height * n[:, 0], power * height * n[:, 1]
    transform(beams, M, b)
