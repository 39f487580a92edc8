"""In-process harness for alignment optimisers: any ask/tell optimiser against an objective
callable, with the noise-free truth recorded per evaluation, and the benchmark protocol's
metrics (OPTICS.md): best-so-far J/J* at budgets, evaluations to 0.95 J*, success rate, motor
travel, evaluations with the beam lost.

Also a synthetic coupled alignment problem (:class:`SyntheticAlignment`, 11 or 12 DOFs) used by
the tests and for development while the optics simulator is not available.

    measure(point: dict) -> (value, variance) | None      # None: failed (beam lost)
    truth(point: dict) -> float                           # noise-free objective
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from agent.messages import Measurement

BUDGETS = (50, 100, 150, 200)
TARGET = 0.95

Measure = Callable[[dict[str, float]], "tuple[float, float] | None"]
Truth = Callable[[dict[str, float]], float]


@dataclass
class RunRecord:
    """One optimiser run: per evaluation the noise-free value, beam-lost flag and position."""

    truth: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)  # nan for failures
    lost: list[bool] = field(default_factory=list)
    positions: list[dict[str, float]] = field(default_factory=list)
    decision_times_s: list[float] = field(default_factory=list)
    #: decision time less the wait for a background training (which a real measurement
    #: would hide; the harness's measurements take no time)
    compute_times_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    training_times_s: list[float] = field(default_factory=list)
    stop_reason: str | None = None


def run(optimiser, measure: Measure, truth: Truth, budget: int, batch: int = 1,
        start: dict[str, float] | None = None, value: str = "value") -> RunRecord:
    """Drive ``optimiser`` (ask/tell) for up to ``budget`` evaluations from ``start``."""
    rec = RunRecord()
    here = dict(start) if start is not None else None
    t0 = time.perf_counter()
    seq = 0
    while seq < budget:
        prop = optimiser.ask(batch, current_position=here)
        rec.decision_times_s.append(prop.decision_time_s)
        rec.compute_times_s.append(prop.decision_time_s
                                   - getattr(optimiser, "training_wait_s", 0.0))
        if prop.phase == "done":
            rec.stop_reason = prop.stop_reason
            break
        if not prop.points:
            raise RuntimeError(f"{type(optimiser).__name__} proposed nothing with nothing "
                               "pending")
        for p in prop.points:
            result = measure(p)
            common = {"run_uid": "bench", "seq": seq, "positions": p}
            if result is None:
                m = Measurement(**common, failure="beam lost")
                rec.measured.append(float("nan"))
            else:
                y, var = result
                m = Measurement(**common, values={value: y}, variances={value: var})
                rec.measured.append(float(y))
            optimiser.tell(m)
            rec.truth.append(float(truth(p)))
            rec.lost.append(result is None)
            rec.positions.append(dict(p))
            here = p
            seq += 1
    rec.wall_s = time.perf_counter() - t0
    rec.training_times_s = list(getattr(optimiser, "training_times_s", []))
    return rec


def metrics(rec: RunRecord, j_star: float, start: dict[str, float],
            spans: dict[str, float], budgets=BUDGETS) -> dict:
    """Best-so-far J/J* at ``budgets`` (max of the noise-free values evaluated so far; also
    the noise-free value at the best *measured* point, what the optimiser would report),
    evaluations to TARGET, travel (sum over moves and DOFs of |delta| / range) and beam-lost
    evaluations."""
    t = np.array(rec.truth) / j_star
    best = np.maximum.accumulate(t) if len(t) else t
    meas = np.where(np.isnan(rec.measured), -np.inf, rec.measured)
    arg = np.array([int(np.argmax(meas[:i + 1])) for i in range(len(meas))])
    reported = t[arg] if len(t) else t
    hit = np.flatnonzero(best >= TARGET)
    path = [start] + rec.positions
    travel = sum(abs(b[k] - a[k]) / spans[k]
                 for a, b in zip(path, path[1:], strict=False) for k in spans)

    def at(a, n):
        return float(a[min(n, len(a)) - 1]) if len(a) else 0.0

    return {"best": {n: at(best, n) for n in budgets},
            "reported": {n: at(reported, n) for n in budgets},
            "evals_to_target": int(hit[0]) + 1 if len(hit) else None,
            "n_evaluations": len(t), "travel_ranges": float(travel),
            "beam_lost": int(np.sum(rec.lost)),
            "decision_time_s": {"median": float(np.median(rec.decision_times_s)),
                                "max": float(np.max(rec.decision_times_s)),
                                "compute_median": float(np.median(rec.compute_times_s)),
                                "compute_max": float(np.max(rec.compute_times_s)),
                                "training_max": float(max(rec.training_times_s or [0.0]))},
            "wall_s": rec.wall_s}


def summarise(results: list[dict], budgets=BUDGETS, success_budget: int = 200) -> dict:
    """Median over seeds of each metric; success = TARGET reached within success_budget."""
    ev = [r["evals_to_target"] if r["evals_to_target"] is not None else np.inf
          for r in results]
    med_ev = float(np.median(ev))
    return {
        "n_seeds": len(results),
        "median_best": {n: float(np.median([r["best"][n] for r in results])) for n in budgets},
        "median_reported": {n: float(np.median([r["reported"][n] for r in results]))
                            for n in budgets},
        "median_evals_to_target": None if not np.isfinite(med_ev) else med_ev,
        "success_rate": float(np.mean([e <= success_budget for e in ev])),
        "success_at_150": float(np.mean([e <= 150 for e in ev])),
        "median_travel_ranges": float(np.median([r["travel_ranges"] for r in results])),
        "total_beam_lost": int(sum(r["beam_lost"] for r in results)),
        "median_decision_time_s": float(np.median([r["decision_time_s"]["median"]
                                                   for r in results])),
        "max_decision_time_s": float(np.max([r["decision_time_s"]["max"] for r in results])),
        "max_compute_time_s": float(np.max([r["decision_time_s"]["compute_max"]
                                            for r in results])),
        "max_training_time_s": float(np.max([r["decision_time_s"]["training_max"]
                                             for r in results])),
    }


def format_table(summaries: dict[str, dict], budgets=BUDGETS) -> str:
    """One line per method."""
    head = (f"{'method':<22}" + "".join(f"{'J/J*@' + str(n):>10}" for n in budgets)
            + f"{'ev->95%':>9}{'succ':>6}{'@150':>6}{'travel':>8}{'lost':>6}{'t_ask':>8}")
    lines = [head]
    for name, s in summaries.items():
        ev = s["median_evals_to_target"]
        lines.append(f"{name:<22}" + "".join(f"{s['median_best'][n]:>10.3f}" for n in budgets)
                     + f"{'>budget' if ev is None else f'{ev:.0f}':>9}"
                     + f"{s['success_rate']:>6.2f}{s['success_at_150']:>6.2f}"
                     + f"{s['median_travel_ranges']:>8.2f}{s['total_beam_lost']:>6d}"
                     + f"{s['median_decision_time_s']:>8.3f}{s['max_compute_time_s']:>7.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- synthetic problem
NAMES = ["dcm_pitch", "dcm_roll", "slit_centre", "slit_gap", "vkb_pitch", "vkb_height",
         "vkb_bender", "vkb_roll", "hkb_pitch", "hkb_height", "hkb_bender"]
UNITS = ["urad", "urad", "um", "um", "urad", "um", "um", "mrad", "urad", "um", "um"]


class SyntheticAlignment:
    """An 11-DOF (12 with ``hard``: a second VKB bender) coupled Gaussian-beam-like problem in
    normalised coordinates, for tests and development (not the optics simulator).

    J = transmissions (Gaussian in the narrow DOFs, with ridges: slit centre with DCM roll,
    VKB height with VKB and DCM pitch, HKB height with pitch) / (sigma_x sigma_y) (focus:
    sigma^2 = 1 + (bender error + pitch coupling)^2 / s^2) x a soft centroid window. Counting
    noise: Poisson on ``counts`` x transmission total counts; the beam is lost when fewer
    than ``min_counts`` land or the centroid is off the camera.
    """

    def __init__(self, seed: int = 0, hard: bool = False, counts: float = 2e5,
                 min_counts: float = 20.0):
        rng = np.random.default_rng(10_000 + seed)
        self.names = NAMES + (["vkb_bender2"] if hard else [])
        self.units = UNITS + (["um"] if hard else [])
        self.d = len(self.names)
        self.hard = hard
        self.low = np.zeros(self.d)
        self.high = np.linspace(100.0, 500.0, self.d)  # engineering ranges, arbitrary units
        self.u_star = rng.uniform(0.4, 0.6, self.d)
        self.counts = counts
        self.min_counts = min_counts
        self._rng = np.random.default_rng(seed)
        self.j_star, self.x_star = self._optimum()

    @property
    def coordinates(self) -> list[dict]:
        return [{"name": n, "low": float(lo), "high": float(hi), "units": un}
                for n, lo, hi, un in zip(self.names, self.low, self.high, self.units, strict=True)]

    @property
    def spans(self) -> dict[str, float]:
        return dict(zip(self.names, self.high - self.low, strict=True))

    def to_unit(self, p: dict[str, float]) -> np.ndarray:
        x = np.array([p[n] for n in self.names])
        return (x - self.low) / (self.high - self.low)

    def to_point(self, u: np.ndarray) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.low + u * (self.high - self.low)), strict=True))

    def parts(self, u: np.ndarray) -> tuple[float, float, float, float]:
        """(transmission, 1/(sigma_x sigma_y), window, centroid radius) at unit point u."""
        e = u - self.u_star
        t = (np.exp(-e[0] ** 2 / (2 * 0.06 ** 2))
             * np.exp(-(e[2] - 0.8 * e[1]) ** 2 / (2 * 0.04 ** 2))
             * np.exp(-(e[5] + 0.5 * e[4] + 0.3 * e[0]) ** 2 / (2 * 0.035 ** 2))
             * np.exp(-(e[9] + 0.5 * e[8]) ** 2 / (2 * 0.04 ** 2)))
        g = 0.1 + 0.9 * u[3]
        g_star = 0.1 + 0.9 * self.u_star[3]
        t *= g / np.sqrt(g ** 2 + 0.25 ** 2)
        vb = e[6] + 0.6 * e[4]
        if self.hard:  # two actuators: the mean focuses, the difference adds coma
            vb = 0.5 * (e[6] + e[11]) + 0.6 * e[4]
            coma = (e[6] - e[11]) / 0.06
        else:
            coma = 0.0
        sy2 = 1 + (vb / 0.03) ** 2 + (e[7] / 0.08) ** 2 + coma ** 2
        sx2 = (g ** 2 + 0.2 ** 2) / (g_star ** 2 + 0.2 ** 2) * (
            1 + ((e[10] + 0.5 * e[8] + 0.2 * (g - g_star)) / 0.03) ** 2)
        cx = 0.8 * e[1] + 1.0 * e[8] + 0.3 * e[7]
        cy = 0.6 * e[4] + 1.2 * e[5] + 0.5 * e[0] + (0.2 * coma * 0.06 if self.hard else 0)
        r2 = cx ** 2 + cy ** 2
        return float(t), float(1 / np.sqrt(sx2 * sy2)), float(np.exp(-r2 / (2 * 0.15 ** 2))), \
            float(np.sqrt(max(abs(cx), abs(cy))))

    def objective_unit(self, u: np.ndarray) -> float:
        t, dens, w, _ = self.parts(np.clip(u, 0, 1))
        return t * dens * w

    def objective(self, p: dict[str, float]) -> float:
        return self.objective_unit(self.to_unit(p))

    def beam_on_camera(self, u: np.ndarray) -> bool:
        t, _, _, _ = self.parts(u)
        e = u - self.u_star
        cx = 0.8 * e[1] + 1.0 * e[8] + 0.3 * e[7]
        cy = 0.6 * e[4] + 1.2 * e[5] + 0.5 * e[0]
        return t * self.counts >= self.min_counts and max(abs(cx), abs(cy)) < 0.3

    def measure(self, p: dict[str, float]) -> tuple[float, float] | None:
        """Noisy flux density and its variance; None when the beam is lost."""
        u = self.to_unit(p)
        if not self.beam_on_camera(u):
            return None
        t, dens, w, _ = self.parts(u)
        n = self.counts * t
        k = self._rng.poisson(n)
        if k < self.min_counts:
            return None
        y = k / self.counts * dens * w
        return float(y), float(y ** 2 / max(k, 1))

    def _optimum(self) -> tuple[float, np.ndarray]:
        best = (-np.inf, self.u_star)
        for k in range(4):
            x0 = np.clip(self.u_star + 0.01 * k * np.sin(np.arange(self.d) + k), 0, 1)
            r = minimize(lambda u: -np.log(self.objective_unit(u) + 1e-300), x0,
                         method="L-BFGS-B", bounds=[(0, 1)] * self.d)
            if -r.fun > best[0]:
                best = (-r.fun, r.x)
        return float(np.exp(best[0])), best[1]

    def misaligned_start(self, fraction: float, rng: np.random.Generator) -> dict[str, float]:
        """x* + U(-fraction, fraction) per DOF (clipped), re-drawn until beam is on camera."""
        for _ in range(10_000):
            u = np.clip(self.x_star + rng.uniform(-fraction, fraction, self.d), 0, 1)
            if self.beam_on_camera(u):
                return self.to_point(u)
        raise RuntimeError("no misaligned start with beam on camera")
