"""TrustRegionBO: local Bayesian optimisation for alignment (many coupled DOFs, a start point
that already sees some beam, a budget of ~100-200 evaluations).

- The value is modelled on a log scale (a Gaussian beam's log flux density is near-quadratic
  in the DOFs, and a misaligned start is orders of magnitude below the optimum) with the noise
  from counting statistics (agent.optimise.model).
- Proposals come from a trust region around the best point (TuRBO, Eriksson et al. 2019):
  a box of side ``length`` (fraction of range) stretched per DOF by the trained length
  scales, doubled on ``success_tolerance`` improvements in a row, halved on
  ``failure_tolerance`` non-improvements in a row. Failed evaluations (beam lost) count as
  non-improvements and are never modelled; candidates near them are not proposed.
- The GP is fitted to the ``local_points`` successful measurements nearest the centre, which
  bounds the decision time, and its hyperparameters are retrained every ``train_every``
  measurements from seeded starts (reproducible).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from scipy.stats import norm, qmc

from agent.acquisition import correlation
from agent.optimise import model
from agent.optimise.base import AskTellOptimiser
from agent.optimise.config import TrustRegionBOConfig

INITIAL_LENGTH_SCALE = 0.3


class TrustRegionBO(AskTellOptimiser):
    """Trust-region BO on a log-scale gpCAM GP (see module doc and TrustRegionBOConfig)."""

    def __init__(self, config: TrustRegionBOConfig):
        super().__init__(config)
        c = config
        self.acquisition_name = c.acquisition
        self.length = c.length_init
        self._fail_tol = c.failure_tolerance or max(4, self.d // 2)
        self._succ = self._fail = 0
        self._best_log = -np.inf
        self._hps: np.ndarray | None = None
        self._trained_at = 0
        self._weights = np.ones(self.d)
        if c.initial_hyperparameters is not None:
            self._install(np.array(c.initial_hyperparameters, float))
        self._gp = None
        half = c.length_init / 2
        sob = qmc.Sobol(self.d, scramble=True, seed=c.seed).random_base2(
            int(np.ceil(np.log2(max(c.n_initial, 2)))))[:c.n_initial]
        self._design = np.clip(self.start + (2 * sob - 1) * half, 0, 1)
        self._design_next = 0
        self.trust_region_history: list[float] = []
        self._job: tuple[threading.Thread, int, list] | None = None
        self.training_wait_s = 0.0  # last ask's wait for a background training
        self.training_times_s: list[float] = []

    # ---------------------------------------------------------------- ingest
    def _observed(self, u, y, var):
        z = np.log(max(y, 1e-300))
        if z > self._best_log + np.log1p(self.config.improvement):
            self._succ, self._fail = self._succ + 1, 0
        else:
            self._succ, self._fail = 0, self._fail + 1
        self._best_log = max(self._best_log, z)
        self._adapt()

    def _failed_at(self, u):
        self._succ, self._fail = 0, self._fail + 1
        self._adapt()

    def _adapt(self):
        c = self.config
        if len(self._x) + len(self._failed) <= 1 + c.n_initial:
            self._succ = self._fail = 0  # the design is not a judgement of the region
            return
        if self._succ >= c.success_tolerance:
            self.length, self._succ = min(2 * self.length, c.length_max), 0
        elif self._fail >= self._fail_tol:
            self.length, self._fail = max(self.length / 2, c.length_min), 0
        self.trust_region_history.append(self.length)

    # ---------------------------------------------------------------- propose
    def _propose(self, n, origin):
        used = self.n_evaluations + len(self._pending)
        pts: list[np.ndarray] = []
        if used == 0:
            pts.append(self.start)
        while len(pts) < n and self._design_next < len(self._design):
            pts.append(self._design[self._design_next])
            self._design_next += 1
        if pts:
            return np.array(pts), np.zeros(len(pts)), "initial_design"
        if len(self._x) < 2:  # no model yet (failures): more of the local design
            return self._box_random(n, self.start, self.config.length_init), np.zeros(n), \
                "initial_design"
        return (*self._gp_points(n, origin), "gp")

    def _box_random(self, n, centre, length):
        return np.clip(centre + (self._rng.random((n, self.d)) - 0.5) * length, 0, 1)

    def _fit(self):
        """Local data, log values, noise; (re)train when due; returns (x, z, gp)."""
        c = self.config
        x_all, y_all, v_all = np.array(self._x), np.array(self._y), np.array(self._var)
        z_all, noise_all = model.log_values(y_all, v_all, c.log_floor, c.default_relative_noise,
                                            c.min_relative_noise)
        centre = x_all[int(np.argmax(z_all))]
        if len(x_all) > c.local_points:
            dist = np.max(np.abs(x_all - centre) / self._weights, axis=1)
            keep = np.argsort(dist, kind="stable")[:c.local_points]
            x, z, noise = x_all[keep], z_all[keep], noise_all[keep]
        else:
            x, z, noise = x_all, z_all, noise_all
        mean = None
        if c.prior_curvature is not None:
            mean = model.FixedCurvatureMean(x, z, np.array(c.prior_curvature))
        elif c.prior_mean == "quadratic" and len(x) > 2:
            mean = model.QuadraticMean(x, z)
        elif c.prior_mean == "full_quadratic" and len(x) > 2:
            mean = model.FullQuadraticMean(x, z, c.quadratic_ridge)
        if self._hps is None:
            self._hps = np.r_[max(float(np.var(z)), 1e-2), np.full(self.d, INITIAL_LENGTH_SCALE)]
        n = len(self._x)
        self.training_wait_s = 0.0
        if self._job is not None and (n >= self._job[1] + c.train_lag
                                      or not c.train_in_background):
            t0 = time.perf_counter()
            self._job[0].join()
            self.training_wait_s = time.perf_counter() - t0
            self._install(self._job[2][0])
            self._job = None
        due = (n - self._trained_at >= c.train_every and n >= 2 + c.n_initial // 2) or \
            (self._trained_at == 0 and n >= 1 + c.n_initial)
        if due and self._job is None:
            self._trained_at = n
            bounds = model.hyperparameter_bounds(z, self.d, c.length_scale_bounds)
            args = (x.copy(), z.copy(), noise.copy(), self._hps.copy(), bounds,
                    c.train_restarts, c.train_max_iter, c.seed + n, mean)
            out: list = []
            th = threading.Thread(target=self._train, args=(args, out), daemon=True,
                                  name="trust-region-training")
            self._job = (th, n, out)
            th.start()
            if not c.train_in_background:
                th.join()
                self._install(out[0])
                self._job = None
        self.hyperparameters = [float(h) for h in self._hps]
        return x, z, model.make_gp(x, z, noise, self._hps, mean)

    def _train(self, args, out):
        t0 = time.perf_counter()
        try:
            out.append(model.train(*args))
        except Exception:  # training failure must never kill the optimiser
            out.append(args[3])
        self.training_times_s.append(time.perf_counter() - t0)

    def _install(self, hps):
        self._hps = hps
        ls = hps[1:]
        self._weights = np.clip(ls / np.exp(np.mean(np.log(ls))), 0.25, 4.0)  # TuRBO stretch

    def curvature(self) -> np.ndarray | None:
        """The curvature (d, d) of the log values around the best point (unit cube), fitted
        to the local data; the ``prior_curvature`` of a later warm-started run. None with
        fewer than 2 d + 2 successful measurements."""
        if len(self._x) < 2 * self.d + 2:
            return None
        x, z = np.array(self._x), np.array(model.log_values(
            np.array(self._y), np.array(self._var), self.config.log_floor,
            self.config.default_relative_noise, self.config.min_relative_noise)[0])
        centre = x[int(np.argmax(z))]
        keep = np.argsort(np.max(np.abs(x - centre), axis=1), kind="stable")
        keep = keep[:self.config.local_points]
        return model.curvature(x[keep], z[keep])

    def close(self):
        if self._job is not None:
            self._job[0].join(30.0)

    def _region(self, centre, origin):
        half = 0.5 * self.length * self._weights
        lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
        tlo, thi = self.travel_box(origin)
        lo2, hi2 = np.maximum(lo, tlo), np.minimum(hi, thi)
        empty = lo2 > hi2
        lo2[empty] = hi2[empty] = np.clip(centre, tlo, thi)[empty]
        return lo2, hi2

    def _candidates(self, centre, lo, hi):
        c = self.config
        m = c.n_candidates
        sob = qmc.Sobol(self.d, scramble=True, seed=self._rng).random_base2(
            int(np.ceil(np.log2(m))))[:m]
        cand = lo + sob * (hi - lo)
        p = c.perturb_probability or min(1.0, 20.0 / self.d)
        if p < 1.0:
            mask = self._rng.random((m, self.d)) < p
            none = ~mask.any(axis=1)
            mask[none, self._rng.integers(0, self.d, int(none.sum()))] = True
            cand = np.where(mask, cand, np.clip(centre, lo, hi))
        if self._failed:
            from scipy.spatial import cKDTree

            dist, _ = cKDTree(np.array(self._failed)).query(cand, k=1, p=np.inf)
            ok = dist > c.failure_distance
            if ok.any():
                cand = cand[ok]
        return cand

    def _gp_points(self, n, origin):
        c = self.config
        x, z, gp = self._fit()
        self._gp = gp
        mu_data, _ = model.mean_std(gp, x)
        centre = x[int(np.argmax(mu_data))]  # best by the model (noise-robust)
        best_mu = float(np.max(mu_data))
        lo, hi = self._region(centre, origin)
        cand = self._candidates(centre, lo, hi)
        if c.acquisition == "ts":
            f = model.sample(gp, cand, n, self._rng)
            picks = []
            for row in f:
                row = row.copy()
                row[picks] = -np.inf
                picks.append(int(np.argmax(row)))
            return cand[picks], f[np.arange(len(picks)), picks]
        mu, sd = model.mean_std(gp, cand)
        picks, vals = [], []
        for _ in range(n):  # greedy batch: pending points reduce the std (kriging believer)
            s = self._score(mu, sd, best_mu)
            s[picks] = -np.inf
            i = int(np.argmax(s))
            picks.append(i)
            vals.append(float(s[i]))
            if n > 1:
                rho = correlation(gp, cand, cand[i:i + 1])[:, 0]
                sd = sd * np.sqrt(np.clip(1 - rho ** 2, 0, 1))
        return cand[picks], np.array(vals)

    def _score(self, mu, sd, best):
        if self.config.acquisition == "ucb":
            return mu + self.config.beta * sd
        zz = (mu - best) / (sd + 1e-12)
        return (mu - best) * norm.cdf(zz) + sd * norm.pdf(zz)
