"""The optics train as a function of motor positions: beam at the camera and the objective.

    model = OpticsModel(OpticsParams())
    model.dofs                              # 11 keys (12 with params.hard)
    b = model.beam({"dcm.pitch": 7.3, ...})  # BeamAtCamera
    model.objective(positions)               # J, counts/s/um^2
    model.objective_array(points)            # (n, d) in model.dofs order -> (n,)

Objective, defined on what the camera measures so a reducer can compute it from NDStats:

    J = R / (2 pi Sx Sy) * exp(-cx^2 / (2 wx^2) - cy^2 / (2 wy^2))

R: counts/s on the sensor (flux x fraction on sensor x counts_per_photon; a reducer uses
(Total - background) / AcquireTime). Sx, Sy: spot rms with pixel^2/12 added, um (a
reducer uses SigmaX * pixel_um; pixel binning adds the pixel^2/12). cx, cy: centroid from
the sensor centre, um; w = window_fraction x sensor size. A soft window, not a target point.

Drift: ``t_s`` (seconds) adds ``drift.rate_per_hour * t_s / 3600`` to the drifting DOF's
position before the physics; the caller supplies the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from sim.optics import elements as el
from sim.optics.beam import XP, YP, Beams, X, Y, drift
from sim.optics.dofs import dof_keys
from sim.optics.params import MirrorParams, OpticsParams

UM, URAD = 1e-6, 1e-6


@dataclass(frozen=True)
class BeamAtCamera:
    """The beam at the camera plane: flux (photons/s, before the sensor edges), centroid
    and optical rms size (um, from the optical axis = sensor centre; no pixel term),
    x-y correlation coefficient, and the fraction of the flux that falls on the sensor."""

    flux_ph_s: float
    centroid_x_um: float
    centroid_y_um: float
    sigma_x_um: float
    sigma_y_um: float
    correlation_xy: float
    fraction_on_sensor: float


class OpticsModel:
    """Gaussian-beam model of source, DCM, SSA, VKB, HKB and camera (OPTICS.md layout)."""

    def __init__(self, params: OpticsParams | None = None):
        self.params = params or OpticsParams()
        self.dofs: tuple[str, ...] = dof_keys(self.params.hard)
        self._offsets = np.array([self.params.offsets[k] for k in self.dofs])
        self._index = {k: i for i, k in enumerate(self.dofs)}

    def vector(self, positions: Mapping[str, float]) -> np.ndarray:
        """Positions as a (d,) array in :attr:`dofs` order; every DOF is required."""
        missing = [k for k in self.dofs if k not in positions]
        unknown = [k for k in positions if k not in self._index]
        if missing or unknown:
            raise KeyError(f"optics positions: missing {missing}, unknown {unknown}")
        return np.array([float(positions[k]) for k in self.dofs])

    def beam(self, positions: Mapping[str, float], t_s: float = 0.0) -> BeamAtCamera:
        """The beam at the camera for motor ``positions`` (DOF units) at time ``t_s``."""
        m = self.moments(self.vector(positions)[None, :], t_s)
        return BeamAtCamera(*(float(m[k][0]) for k in (
            "flux", "cx", "cy", "sx", "sy", "rho", "fraction")))

    def objective(self, positions: Mapping[str, float], t_s: float = 0.0) -> float:
        """J (module doc), counts/s/um^2, noise free."""
        return float(self.objective_array(self.vector(positions)[None, :], t_s)[0])

    def objective_array(self, points: np.ndarray, t_s: float = 0.0) -> np.ndarray:
        """J for each row of ``points`` (n, d), columns in :attr:`dofs` order -> (n,)."""
        m = self.moments(np.atleast_2d(np.asarray(points, float)), t_s)
        cam = self.params.camera
        var_pix = cam.pixel_um**2 / 12.0
        sx, sy = np.sqrt(m["sx"] ** 2 + var_pix), np.sqrt(m["sy"] ** 2 + var_pix)
        wx = cam.window_fraction * cam.size_x * cam.pixel_um
        wy = cam.window_fraction * cam.size_y * cam.pixel_um
        window = np.exp(-0.5 * ((m["cx"] / wx) ** 2 + (m["cy"] / wy) ** 2))
        rate = m["flux"] * m["fraction"] * cam.counts_per_photon
        return rate / (2 * np.pi * sx * sy) * window

    def moments(self, points: np.ndarray, t_s: float = 0.0) -> dict[str, np.ndarray]:
        """Camera-plane arrays (n,): flux, cx, cy, sx, sy (um), rho, fraction on sensor."""
        beams = self.propagate(points, t_s)
        lam = el.wavelength_m(self.params.source.energy_kev)
        S = beams.S
        diff_x = lam / (4 * np.pi * np.sqrt(S[:, XP, XP]))  # Gaussian waist-divergence limit
        diff_y = lam / (4 * np.pi * np.sqrt(S[:, YP, YP]))
        sx = np.sqrt(S[:, X, X] + diff_x**2) / UM
        sy = np.sqrt(S[:, Y, Y] + diff_y**2) / UM
        cx, cy = beams.mu[:, X] / UM, beams.mu[:, Y] / UM
        cam = self.params.camera
        frac = (_inside(cx, sx, cam.size_x * cam.pixel_um / 2)
                * _inside(cy, sy, cam.size_y * cam.pixel_um / 2))
        rho = S[:, X, Y] / np.sqrt(S[:, X, X] * S[:, Y, Y]) * (sx * sy > 0)
        return {"flux": beams.flux, "cx": cx, "cy": cy, "sx": sx, "sy": sy, "rho": rho,
                "fraction": frac}

    def propagate(self, points: np.ndarray, t_s: float = 0.0) -> Beams:
        """The beams (SI units) at the camera plane for motor positions ``points`` (n, d)."""
        p, d = self.params, self._deviations(points, t_s)
        src = p.source
        beams = Beams.source(len(points), (src.sigma_x_um * UM, src.sigma_xp_urad * URAD,
                                      src.sigma_y_um * UM, src.sigma_yp_urad * URAD),
                             src.flux_ph_s)
        drift(beams, p.dcm.z_m)
        el.dcm(beams, d["dcm.pitch"] * URAD, d["dcm.roll"] * URAD, src.energy_kev)
        drift(beams, p.ssa.z_m - p.dcm.z_m)
        el.slit(beams, d["ssa.center"] * UM, d["ssa.gap"] * UM)
        drift(beams, p.vkb.z_m - p.ssa.z_m)
        self._mirror(beams, "y", p.vkb, d, "vkb")
        drift(beams, p.hkb.z_m - p.vkb.z_m)
        self._mirror(beams, "x", p.hkb, d, "hkb")
        drift(beams, p.camera_z_m - p.hkb.z_m)
        return beams

    def _deviations(self, points: np.ndarray, t_s: float) -> dict[str, np.ndarray]:
        """Motor positions minus the aligned offsets, per DOF (DOF units), drift applied."""
        if points.shape[1] != len(self.dofs):
            raise ValueError(f"points have {points.shape[1]} columns; the model has "
                             f"{len(self.dofs)} DOFs")
        dev = points - self._offsets
        drift_cfg = self.params.drift
        dev[:, self._index[drift_cfg.dof]] += drift_cfg.rate_per_hour * t_s / 3600.0
        out = {k: dev[:, i] for k, i in self._index.items()}
        if self.params.hard:  # two actuators: mean -> focal power, difference -> coma
            us, ds = out["vkb.bender_us"], out["vkb.bender_ds"]
            out["vkb.bender"], out["vkb.coma"] = (us + ds) / 2, us - ds
        return out

    def _mirror(self, beams: Beams, plane: str, m: MirrorParams,
                d: dict[str, np.ndarray], name: str) -> None:
        power = 1.0 / m.p_m + 1.0 / m.q_m + m.power_per_percent * d[f"{name}.bender"]
        roll = d.get(f"{name}.roll", np.zeros(len(power))) * URAD
        coma = d.get(f"{name}.coma")
        el.mirror(beams, plane, m.theta_mrad * 1e-3, m.length_m, power,
                  d[f"{name}.pitch"] * URAD, d[f"{name}.height"] * UM, roll,
                  m.slope_error_urad * URAD,
                  None if coma is None else m.coma_per_percent * coma)


def _inside(c: np.ndarray, s: np.ndarray, half: float) -> np.ndarray:
    """Fraction of a Gaussian N(c, s^2) inside [-half, half]."""
    r = np.sqrt(2.0) * np.maximum(s, 1e-12)
    return 0.5 * (erf((half - c) / r) + erf((half + c) / r))
