"""The GP decision engine: measurements in, proposals out, on gpCAM's GPOptimizer.

Decision path (tell -> ask) stays fast: the GP is updated incrementally (gpCAM rank-n update),
the acquisition is scored on a bounded quasi-random candidate set in chunks, batches are chosen
greedily with a variance penalty (no joint optimisation), and hyperparameters are trained in a
background thread on a snapshot (agent.training). All state is guarded by one lock.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from agent import checkpoint
from agent.acquisition import Scorer, correlation, posterior_mean_std, value_moments
from agent.config import EngineConfig, make_engine_config
from agent.design import (
    candidates,
    check_grid,
    first_pass_size,
    initial_design,
    plateau_share,
    raster,
    raster_sizes,
    residual_share,
)
from agent.errors import AgentError, MessageError
from agent.messages import Measurement, Proposal
from agent.space import Space, near
from agent.training import (
    AUTO_KERNELS,
    BackgroundTrainer,
    KernelStart,
    area_median,
    hyperparameter_bounds,
    initial_hyperparameters,
    length_scale_floor,
    make_gp,
    schedule_next,
)
from agent.travel import order_path, path_time_s, travel_time_s

INITIAL_LENGTH_SCALE = 0.15  # normalised; used until the first training
#: non-negative, std-like scores (travel cost divides them directly; exploration applies)
MAPPING_ACQUISITIONS = ("mapping", "log_std", "variance", "variation")
LOG_FLOOR = 1e-3  # log_gp: values are floored at LOG_FLOOR * max(values) (log needs y > 0)


class Engine:
    """Decision engine for one configured problem. See the agent contract for the API."""

    def __init__(self, config: EngineConfig, checkpoint_dir: Path | None = None):
        threadpool_limits(1)  # BLAS threads fight the service and trainer for 2 cores
        self.config = config
        self.space = Space(config)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(config.seed)
        n0 = self._n0 = design_size(config, self.space.d)
        design = config.initial_design
        self._design = initial_design(design.method, n0, self.space.d, config.seed,
                                      design.interleaved)
        #: an interleaved raster's first pass; None once the second pass is decided
        self._first_pass = first_pass_size(n0, self.space.d) if design.interleaved else None
        #: {"residual_share", "plateau_share", "second_pass"} once decided
        self.raster_decision: dict | None = None
        # spare points for failed or lost design points
        self._design = np.vstack([self._design, initial_design("sobol", 3 * n0, self.space.d,
                                                               config.seed + 1)])
        self._check = check_grid(self.space.d, config.seed)
        #: per coordinate, normalised: no model-based proposal this close to a taken point
        #: (Chebyshev; CoordinateConfig.resolution, at least pending_tolerance)
        self._min_spacing = np.maximum(config.pending_tolerance, np.array(
            [c.resolution or 0.0 for c in config.coordinates]) / self.space.span)
        self._raster_reversed: bool | None = None  # raster design run from its far end
        self._measurements: list[Measurement] = []
        self._keys: set[tuple[str, int]] = set()
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._var: list[float] = []  # nan where the measurement gave none
        self._failed: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._gp = None
        self._hps: np.ndarray | None = None
        #: the GP's kernel: config.kernel, or for 'auto' the one the last training chose
        self._kernel = AUTO_KERNELS[0] if config.kernel == "auto" else config.kernel
        self._next_train = config.training.first_at
        self._trainer = BackgroundTrainer(self._install)
        self._proposal_id = 0
        self._last: dict | None = None
        self.started_at = time.time()
        self._closed = False

    # ---------------------------------------------------------------- ingest
    def tell(self, measurement: Measurement) -> None:
        """Ingest one measurement. Raises MessageError naming the field, value and bound.

        A measurement with ``failure`` is recorded (counted, never modelled). The same
        (run_uid, seq) twice is ignored.
        """
        with self._lock:
            if self._ingest(measurement):
                if not measurement.failure:
                    self._update_gp()
                    self._maybe_train()
        self._autosave()

    def check(self, m: Measurement) -> np.ndarray:
        """Validate without ingesting; returns the unit-cube position (d,). Raises
        MessageError naming the field, value and bound, as ``tell`` would."""
        u = self.space.position(dict(m.positions), what=f"measurement {m.run_uid}:{m.seq}")
        if m.failure is None and self.config.value not in m.values:
            raise MessageError(f"measurement {m.run_uid}:{m.seq}: values lack "
                               f"{self.config.value!r} (got {sorted(m.values)})")
        return u

    def _ingest(self, m: Measurement) -> bool:
        key = (m.run_uid, m.seq)
        if key in self._keys:
            return False
        u = self.check(m)
        if m.failure is None:
            self._x.append(u)
            self._y.append(float(m.values[self.config.value]))
            var = (m.variances or {}).get(self.config.value)
            self._var.append(np.nan if var is None else float(var))
        else:
            self._failed.append(u)
        self._keys.add(key)
        self._measurements.append(m)
        self._clear_pending(u)
        return True

    def release(self, points: list[dict[str, float]]) -> int:
        """Proposed points that will never be measured stop being pending (a run ended
        between ask and measurement), so they may be proposed again.

        ``points`` are {name: value} in engineering units. Returns how many of them were
        pending. Raises MessageError naming the coordinate and value for a point outside the
        bounds or missing a coordinate; nothing is released then.
        """
        us = [self.space.position(p, what="released point") for p in points]
        with self._lock:
            before = len(self._pending)
            for u in us:
                self._clear_pending(u)
            released = before - len(self._pending)
        if released:
            self._autosave()
        return released

    def restore_pending(self, points: list[dict[str, float]], proposal_id: int = 0
                        ) -> list[dict[str, float]]:
        """After a restart: points proposed before it become pending again, except those
        within pending_tolerance of a point measured, failed or pending since (they were
        measured); proposal ids continue after ``proposal_id``. Returns the points restored.
        Raises MessageError naming the coordinate for a point outside the bounds."""
        us = [self.space.position(p, what="restored pending point") for p in points]
        with self._lock:
            self._proposal_id = max(self._proposal_id, int(proposal_id))
            restored = []
            for p, u in zip(points, us, strict=True):
                if not near(u[None], self._taken(), self.config.pending_tolerance)[0]:
                    self._pending.append(u)
                    restored.append(p)
        self._autosave()
        return restored

    def _clear_pending(self, u: np.ndarray) -> None:
        if not self._pending:
            return
        p = np.array(self._pending)
        dist = np.max(np.abs(p - u), axis=1)
        i = int(np.argmin(dist))
        if dist[i] <= self.config.pending_tolerance:
            self._pending.pop(i)

    def _noise(self) -> np.ndarray:
        var = np.array(self._var)
        default = self.config.default_noise_variance
        if default is None:  # FIELD_NOTES: gpCAM's own default is ~0 for centred data
            default = max((1e-2 * float(np.std(self._y))) ** 2, 1e-12)
        return np.where(np.isnan(var), default, np.maximum(var, 1e-12))

    def _gp_y(self, start: int = 0) -> np.ndarray:
        """Values as the GP is given them (floored for the log-GP)."""
        y = np.array(self._y[start:])
        if self.config.model == "log_gp":
            y = np.maximum(y, max(LOG_FLOOR * max(self._y), 1e-12))
        return y

    def _hp_scale_y(self) -> np.ndarray:
        """Values in GP space (log for the log-GP), for the signal-variance bounds."""
        y = self._gp_y()
        return np.log(y) if self.config.model == "log_gp" else y

    def _prior_mean(self) -> float | None:
        """GP-space prior mean for a new GP (None: gpCAM's default, the data mean)."""
        if self.config.prior_mean == "data_mean" or len(self._x) < 2:
            return None
        return area_median(np.array(self._x), self._hp_scale_y())

    def _update_gp(self) -> None:
        n = len(self._x)
        if n < 2:
            return
        if self._gp is None or len(self._gp.x_data) > n:
            self._rebuild_gp()
            return
        k = len(self._gp.x_data)
        if k < n:
            noise = self._noise()[k:]
            self._gp.tell(np.array(self._x[k:]), self._gp_y(k), noise_variances=noise)

    def _rebuild_gp(self) -> None:
        if self._hps is None:
            v = max(float(np.var(self._hp_scale_y())), 1e-12)
            self._hps = initial_hyperparameters(self._kernel, v, self.space.d,
                                                INITIAL_LENGTH_SCALE)
        self._gp = make_gp(np.array(self._x), self._gp_y(), self._noise(), self._hps,
                           self.config.model, self._prior_mean(), self._kernel)

    # ---------------------------------------------------------------- training
    def _maybe_train(self, force: bool = False) -> None:
        t = self.config.training
        n = len(self._x)
        if t.max_points is not None and n > t.max_points:
            return
        if (n >= self._next_train or force) and n >= 2 and not self._trainer.running:
            self._next_train = schedule_next(n, t.schedule, t.first_at, t.every)
            self._trainer.start(np.array(self._x), self._gp_y(), self._noise(),
                                self._kernel_starts(), t.n_restarts, t.max_iter,
                                background=t.background, model=self.config.model,
                                prior_mean=self._prior_mean(), seed=self.config.seed + n)

    def _kernel_starts(self) -> list[KernelStart]:
        """The kernels to train (AUTO_KERNELS for 'auto'), each from its last
        hyperparameters."""
        z = self._hp_scale_y()
        names = AUTO_KERNELS if self.config.kernel == "auto" else (self.config.kernel,)
        v = max(float(np.var(z)), 1e-12)
        scales = self._length_scale_bounds()  # one nearest-neighbour query for all kernels
        return [KernelStart(k, self._hps if k == self._kernel and self._hps is not None else
                            initial_hyperparameters(k, v, self.space.d, INITIAL_LENGTH_SCALE),
                            hyperparameter_bounds(z, self.space.d, scales, k))
                for k in names]

    def _length_scale_bounds(self) -> tuple[float, float]:
        """TrainingConfig.length_scale_bounds, the lower raised to length_scale_floor."""
        t = self.config.training
        lo, hi = t.length_scale_bounds
        if t.length_scale_floor is None:
            return lo, hi
        return min(max(lo, length_scale_floor(np.array(self._x), t.length_scale_floor)),
                   hi / 2), hi

    def _install(self, gp, hps: np.ndarray, n_snapshot: int, duration_s: float) -> None:
        with self._lock:
            n = len(self._x)
            if n > n_snapshot:  # data that arrived during training: rank-k update
                gp.tell(np.array(self._x[n_snapshot:]), self._gp_y(n_snapshot),
                        noise_variances=self._noise()[n_snapshot:])
            self._gp, self._hps, self._kernel = gp, hps, gp.beamagent_kernel

    # ---------------------------------------------------------------- propose
    def ask(self, n: int = 1, current_position: dict[str, float] | None = None) -> Proposal:
        """Propose ``n`` points, ordered to reduce travel from ``current_position``.

        Never blocks on training. Returned points become pending and are never proposed
        again. When a stop condition is met returns phase 'done' with ``stop_reason``.
        Raises MessageError for n < 1 or an invalid current_position.
        """
        if n < 1:
            raise MessageError(f"ask: n={n} must be >= 1")
        t0 = time.perf_counter()
        with self._lock:
            origin = (self.space.position(current_position, what="current_position")
                      if current_position is not None else self._default_origin())
            reason = self._stop_reason()
            room = self._room()
            if reason is None and room == 0:
                reason = (f"max_points reached: {len(self._x)} measured + {len(self._pending)} "
                          f"pending of {self.config.stop.max_points}")
            if reason is not None:
                return self._proposal([], [], "done", t0, reason)
            n = min(n, room) if room is not None else n
            self._decide_second_pass()
            if len(self._x) < self._n0 or self._gp is None:
                pts, vals, phase = self._design_points(n, origin), None, "initial_design"
            else:
                pts, vals = self._gp_points(n, origin)
                phase = "gp"
            order = order_path(self.space.to_eng(pts), None if origin is None
                               else self.space.to_eng(origin), self.space.velocity)
            pts = pts[order]
            vals = [0.0] * len(pts) if vals is None else [float(vals[i]) for i in order]
            self._pending.extend(pts)
            prop = self._proposal(pts, vals, phase, t0, None)
        self._autosave()
        return prop

    def _decide_second_pass(self) -> None:
        """After an interleaved raster's first pass: skip the second where the map's error
        is localised or the map is mostly plateaus (InitialDesignConfig.localised_share,
        plateau_share)."""
        n1 = self._first_pass
        if n1 is None or len(self._x) < n1:
            return
        x, y = np.array(self._x[:n1]), np.array(self._y[:n1])
        design = self.config.initial_design
        share = residual_share(x, y)
        plateaus = plateau_share(x, y, self._noise()[:n1])
        second = share < design.localised_share and (
            design.plateau_share is None or plateaus < design.plateau_share)
        if not second:
            self._n0 = n1
        self._first_pass = None
        self.raster_decision = {"residual_share": share, "plateau_share": plateaus,
                                "second_pass": second}

    def _room(self) -> int | None:
        mp = self.config.stop.max_points
        return None if mp is None else max(mp - len(self._x) - len(self._pending), 0)

    def _default_origin(self) -> np.ndarray | None:
        if self._pending:
            return self._pending[-1]
        return self._x[-1] if self._x else None

    def _taken(self) -> np.ndarray:
        parts = [np.array(a).reshape(-1, self.space.d) for a in (self._x, self._failed,
                                                                   self._pending)]
        return np.vstack(parts)

    def _design_points(self, n: int, origin) -> np.ndarray:
        free = ~near(self._design, self._taken(), self.config.pending_tolerance)
        pts = self._design[free][:n]
        block = self._design[:self._n0]
        open_block = block[free[:len(block)]]
        if self.config.initial_design.method == "raster" and len(open_block):
            # a raster is run in its serpentine order (nearest-first breaks it: with parallel
            # motors the diagonal neighbour is as near as the next point of the row, and the
            # tie is decided by rounding, so the path zig-zags and ends with long jumps),
            # from whichever end is nearer the motors at the first ask (an interleaved
            # raster from its start: its first pass is the one that decides)
            if self._raster_reversed is None and not self.config.initial_design.interleaved:
                self._raster_reversed = bool(
                    origin is not None and len(open_block) == len(block) and
                    np.diff(travel_time_s(self.space.to_eng(origin),
                                          self.space.to_eng(block[[0, -1]]),
                                          self.space.velocity))[0] < 0)
            pts = (open_block[::-1] if self._raster_reversed else open_block)[:n]
        elif origin is not None and len(open_block) > n:
            # the design's order does not matter once all of it is run: visit nearest first
            t = travel_time_s(self.space.to_eng(origin), self.space.to_eng(open_block),
                              self.space.velocity)
            pts = open_block[np.argsort(t, kind="stable")[:n]]
        if len(pts) < n:  # design exhausted (failures, lost proposals): random fill
            extra = self._rng.random((n - len(pts), self.space.d))
            pts = np.vstack([pts, extra])
        return pts

    def _gp_points(self, n: int, origin) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        N = len(self._x)
        m = int(np.clip(cfg.decision_flops / N ** 2, 200, cfg.n_candidates))
        cand = candidates(m, self.space.d, self._rng, origin)
        cand = self._spaced(cand, self._min_spacing)
        if len(cand) == 0:  # the resolution is reached everywhere: pending_tolerance alone
            cand = self._spaced(candidates(m, self.space.d, self._rng, origin),
                                np.full(self.space.d, cfg.pending_tolerance))
        acq = cfg.acquisition if cfg.acquisition is not None else cfg.acquisition_name
        scorer = Scorer(acq, self._gp, cand, np.array(self._y), cfg.ucb_beta,
                        cfg.variation_floor, cfg.variation_measure, cfg.mapping_gain)
        sd = scorer.sd.copy()
        if self._pending:  # pending points count as measured for the std (kriging believer)
            rho = correlation(self._gp, cand, np.array(self._pending))
            sd *= np.sqrt(np.prod(np.clip(1.0 - rho ** 2, 0.0, 1.0), axis=1))
        explore = cfg.exploration if scorer.name in MAPPING_ACQUISITIONS else 0.0
        gap = None
        if explore > 0 or scorer.name == "variation":
            # coverage: distance to the nearest measured or pending point
            gap = _nearest_distance(cand, self._taken())
            if cfg.coverage_boundary == "mirror":
                gap = np.minimum(gap, 2.0 * np.min(np.minimum(cand, 1.0 - cand), axis=1))
        h = cfg.travel_horizon
        if h is not None and origin is not None and h > n:
            # receding horizon: the h best points for the map as a set (greedy, travel
            # ignored), then the next n by acquisition per second among those alone
            s = _with_exploration(scorer.score(sd, gap), gap, explore)
            idx, _ = self._greedy(h, cand, scorer, sd, gap, explore, None)
            cand, sd, gap, explore = cand[idx], sd[idx], None, 0.0
            scorer = _Fixed(scorer.name, s[idx])  # each point's value if it were next
        chosen, values = self._greedy(n, cand, scorer, sd, gap, explore, origin)
        return cand[chosen], np.array(values)

    def _spaced(self, cand: np.ndarray, spacing: np.ndarray) -> np.ndarray:
        """The candidates farther than ``spacing`` (d,) along some axis from every taken
        point."""
        return cand[~near(cand / spacing, self._taken() / spacing, 1.0)]

    def _greedy(self, n: int, cand: np.ndarray, scorer, sd: np.ndarray, gap, explore: float,
                here) -> tuple[list[int], list[float]]:
        """Greedy batch of ``n`` candidate indices (variance penalty, coverage update);
        acquisition per second of beamtime from ``here`` (None: travel ignored). Returns the
        indices and the scores they were picked with (for a horizon: the scores of the
        set)."""
        spacing = self._min_spacing
        sd, gap = sd.copy(), None if gap is None else gap.copy()
        alive = np.ones(len(cand), dtype=bool)
        chosen, values = [], []
        for _ in range(min(n, len(cand))):
            s = _with_exploration(scorer.score(sd, gap), gap, explore)
            rate = s if here is None else self._per_time(s, cand, here)
            pick = int(np.argmax(np.where(alive, rate, -np.inf)))
            chosen.append(pick)
            values.append(s[pick])
            alive &= np.max(np.abs(cand - cand[pick]) / spacing, axis=1) > 1.0
            if not isinstance(scorer, _Fixed):
                rho = correlation(self._gp, cand, cand[pick:pick + 1])[:, 0]
                sd *= np.sqrt(np.clip(1.0 - rho ** 2, 0.0, 1.0))
            if gap is not None:
                gap = np.minimum(gap, np.linalg.norm(cand - cand[pick], axis=1))
            here = None if here is None else cand[pick]
        return chosen, values

    def _per_time(self, s: np.ndarray, cand: np.ndarray, here) -> np.ndarray:
        """Acquisition per second of beamtime (travel + overhead); avoids gpCAM's sign trap."""
        if here is None or (np.all(np.isinf(self.space.velocity)) and
                            self.config.overhead_s == 0):
            return s
        cost = self.config.overhead_s + travel_time_s(
            self.space.to_eng(here), self.space.to_eng(cand), self.space.velocity)
        cost = np.maximum(cost, 1e-3)
        if np.min(s) < 0 or self.config.acquisition_name not in MAPPING_ACQUISITIONS:
            # signed scores: rescale to (0, 1] so that dividing by cost keeps the preference
            s = (s - np.min(s)) / (np.ptp(s) + 1e-300) + 1e-3
        return s / cost ** self.config.travel_exponent

    def _proposal(self, pts, vals, phase, t0, reason) -> Proposal:
        self._proposal_id += 1
        prop = Proposal(
            proposal_id=self._proposal_id, points=self.space.as_dicts(pts) if len(pts) else [],
            acquisition_function=self.config.acquisition_name,
            acquisition_values=list(vals), phase=phase,
            hyperparameters=[] if self._hps is None else [float(h) for h in self._hps],
            n_measurements=len(self._x), decision_time_s=time.perf_counter() - t0,
            stop_reason=reason)
        self._last = {"proposal_id": prop.proposal_id, "points": prop.points,
                      "acquisition_values": prop.acquisition_values, "phase": phase,
                      "decision_time_s": prop.decision_time_s}
        return prop

    # ---------------------------------------------------------------- stop / status
    def stop_reason(self) -> str | None:
        """Why the run should stop (point budget, time budget, uncertainty target) or None."""
        with self._lock:
            return self._stop_reason()

    def _stop_reason(self) -> str | None:
        s = self.config.stop
        if s.max_points is not None and len(self._x) >= s.max_points:
            return f"max_points reached: {len(self._x)} of {s.max_points}"
        elapsed = time.time() - self.started_at
        if s.max_time_s is not None and elapsed >= s.max_time_s:
            return f"max_time_s reached: {elapsed:.1f} s of {s.max_time_s} s"
        if s.target_uncertainty is not None and self._gp is not None and \
                len(self._x) >= self._n0:
            _, sd = value_moments(self._gp, *posterior_mean_std(self._gp, self._check))
            stat = float(np.max(sd) if s.uncertainty_statistic == "max" else np.mean(sd))
            if stat <= s.target_uncertainty:
                return (f"target_uncertainty reached: {s.uncertainty_statistic} posterior std "
                        f"{stat:.4g} <= {s.target_uncertainty}")
        return None

    def status(self) -> dict:
        """JSON-able state summary for monitors."""
        with self._lock:
            tr = self._trainer
            return {
                "n_measurements": len(self._x), "n_failed": len(self._failed),
                "n_pending": len(self._pending),
                "hyperparameters": None if self._hps is None else [float(h) for h in self._hps],
                "kernel": self._kernel,
                "training": {"running": tr.running, "n_trainings": tr.n_trainings,
                             "last_n": tr.last_n, "last_duration_s": tr.last_duration_s,
                             "next_at": self._next_train, "last_error": tr.last_error},
                "initial_design": {"n_points": self._n0, "raster_decision":
                                   self.raster_decision},
                "last_proposal": self._last, "acquisition_function":
                    self.config.acquisition_name, "mode": self.config.mode,
            }

    def _model_points(self, points: np.ndarray, what: str) -> np.ndarray:
        """``points`` (m, d) in engineering units as unit-cube positions, once a GP exists
        (call holding the lock). Raises MessageError for the wrong number of columns,
        AgentError before the GP exists."""
        pts = np.atleast_2d(np.asarray(points, dtype=float))
        if pts.shape[1] != self.space.d:
            raise MessageError(f"{what}: points have {pts.shape[1]} columns, "
                               f"expected {self.space.d} ({self.space.names})")
        if self._gp is None:
            raise AgentError(f"{what}: no model yet ({len(self._x)} measurements)")
        return self.space.to_unit(pts)

    def posterior(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (m,) and variance (m,) at ``points`` (m, d) in engineering units.

        Raises AgentError before the GP exists (fewer than 2 successful measurements).
        """
        with self._lock:
            u = self._model_points(points, "posterior")
            mu, sd = value_moments(self._gp, *posterior_mean_std(self._gp, u))
        return mu, sd ** 2

    def posterior_mean(self, points: np.ndarray, chunk: int = 5000) -> np.ndarray:
        """The map: posterior mean (m,) at ``points`` (m, d) in engineering units, without
        the variance (a fraction of :meth:`posterior`'s cost on large grids). For the log-GP
        it is the lognormal median, as in :meth:`posterior`.

        Raises AgentError before the GP exists (fewer than 2 successful measurements).
        """
        with self._lock:
            u = self._model_points(points, "posterior_mean")
            mu = np.concatenate([np.asarray(self._gp.posterior_mean(u[i:i + chunk])["m(x)"])
                                 .reshape(-1) for i in range(0, len(u), chunk)])
            return value_moments(self._gp, mu, np.zeros_like(mu))[0]

    @property
    def measurements(self) -> list[Measurement]:
        """All recorded measurements, failed ones included, in arrival order."""
        with self._lock:
            return list(self._measurements)

    @property
    def pending(self) -> list[dict[str, float]]:
        with self._lock:
            return self.space.as_dicts(np.array(self._pending)) if self._pending else []

    def wait_for_training(self, timeout_s: float = 60.0) -> bool:
        """Block until no training runs (tests, scripts). Returns False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._trainer.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ---------------------------------------------------------------- persistence
    def _state(self) -> dict:
        return {"config": self.config.to_jsonable(),
                "measurements": [m.model_dump(mode="json") for m in self._measurements],
                "hyperparameters": None if self._hps is None else self._hps.tolist(),
                "kernel": self._kernel,
                "pending": self.space.as_dicts(np.array(self._pending)) if self._pending else [],
                "proposal_id": self._proposal_id, "started_at": self.started_at}

    def save_checkpoint(self) -> Path:
        """Write the state atomically to checkpoint_dir/engine_checkpoint.json.

        Raises AgentError if the engine has no checkpoint_dir.
        """
        if self.checkpoint_dir is None:
            raise AgentError("save_checkpoint: engine has no checkpoint_dir")
        with self._lock:
            state = self._state()
        return checkpoint.write_atomic(self.checkpoint_dir / checkpoint.FILENAME, state)

    def _autosave(self) -> None:
        if self.checkpoint_dir is not None and not self._closed:
            self.save_checkpoint()

    @classmethod
    def from_checkpoint(cls, path: str | Path, checkpoint_dir: Path | None = None) -> Engine:
        """Rebuild from a checkpoint file (or directory). Hyperparameters are restored."""
        state = checkpoint.read(Path(path))
        config = make_engine_config(state["config"])
        d = Path(path) if Path(path).is_dir() else Path(path).parent
        eng = cls._rebuilt(config, [Measurement.model_validate(m) for m in state["measurements"]],
                           checkpoint_dir or d, state.get("hyperparameters"),
                           state.get("kernel"))
        with eng._lock:
            for p in state.get("pending", []):
                eng._pending.append(eng.space.position(p, what="checkpoint pending"))
            eng._proposal_id = int(state.get("proposal_id", 0))
            eng.started_at = float(state.get("started_at", eng.started_at))
        return eng

    @classmethod
    def from_measurements(cls, config: EngineConfig, measurements: list[Measurement],
                          checkpoint_dir: Path | None = None) -> Engine:
        """Rebuild from recorded measurements alone; hyperparameters are retrained."""
        return cls._rebuilt(config, measurements, checkpoint_dir, None)

    @classmethod
    def _rebuilt(cls, config, measurements, checkpoint_dir, hps, kernel=None) -> Engine:
        eng = cls(config, checkpoint_dir=checkpoint_dir)
        with eng._lock:
            if hps is not None and kernel is not None:  # the kernel the hyperparameters fit
                eng._kernel = kernel
            for m in measurements:
                eng._ingest(m)
            if measurements:
                eng.started_at = min(m.timestamp for m in measurements)
            if hps is not None:
                eng._hps = np.array(hps, dtype=float)
            if len(eng._x) >= 2:
                eng._rebuild_gp()
                t = config.training
                eng._next_train = schedule_next(len(eng._x), t.schedule, t.first_at, t.every)
                if hps is None and len(eng._x) >= t.first_at:
                    eng._maybe_train(force=True)
        return eng

    def close(self) -> None:
        """Stop background training; idempotent."""
        self._closed = True
        self._trainer.close()


def design_size(config: EngineConfig, d: int) -> int:
    """Points in the start-up design. ``initial_design.n_points``, except for a raster: the
    largest full k^d raster (k >= 2) within n_points and within ``budget_fraction`` (default
    a third) of ``stop.max_points``, so that the coarse raster always covers the whole space
    (a raster cut short by the point budget leaves part of the sample unseen). With
    ``budget_fraction`` the raster may have k+1 points on some axes
    (:func:`agent.design.raster_sizes`), and with a time budget it also fits that fraction
    of the beamtime (:func:`raster_beamtime_s`). The budget is the run's
    (:func:`run_budget`)."""
    design = config.initial_design
    n = design.n_points
    if design.method != "raster":
        return n
    fraction = design.budget_fraction
    max_points, max_time_s = run_budget(config)
    if max_points is not None:
        n = min(n, int(max_points * (fraction or 1 / 3) + 1e-9))
    k = max(int(np.floor(max(n, 1) ** (1.0 / d) + 1e-9)), 2)
    if fraction is None:
        return k ** d
    sizes = [m for j in range(k, 1, -1) for m in raster_sizes(j, d)[::-1] if m <= n]
    for m in sorted(set(sizes), reverse=True):
        if max_time_s is None or raster_beamtime_s(config, m) <= fraction * max_time_s + 1e-9:
            return m
    return 2 ** d


def run_budget(config: EngineConfig) -> tuple[int | None, float | None]:
    """(max_points, max_time_s) of the run: its plan's (``config.budget``) where given, else
    the stop condition's."""
    b = config.budget
    points = b.max_points if b is not None and b.max_points is not None else \
        config.stop.max_points
    time_s = b.max_time_s if b is not None and b.max_time_s is not None else \
        config.stop.max_time_s
    return points, time_s


def raster_beamtime_s(config: EngineConfig, n: int) -> float:
    """Beamtime (s) of the raster of n points the config runs (serpentine, or interleaved
    with ``localised_share``; :func:`agent.design.raster`): overhead_s per point plus the
    moves (motors in parallel, :func:`agent.travel.path_time_s`).

    An interleaved raster's row changes are two steps long, so it is one row coarser than
    the single-pass raster of the same beamtime. Sizing it as the single-pass raster and
    letting the budget cut the end of its second pass was measured worse (an unmeasured
    corner costs more than the coarser rows; ripple at T/3: RMSE 0.22 vs 0.10,
    benchmarks/bench_map_kinds.py --budgeted, seed 0)."""
    space = Space(config)
    pts = space.to_eng(raster(n, space.d, config.initial_design.interleaved))
    return len(pts) * config.overhead_s + path_time_s(list(range(len(pts))), pts, pts[0],
                                                      space.velocity)


def _with_exploration(s: np.ndarray, gap: np.ndarray | None, explore: float) -> np.ndarray:
    """Scores, each term scaled to its maximum, plus ``explore`` x the coverage gap."""
    if explore <= 0:
        return s
    return s / (np.max(s) + 1e-300) + explore * gap / (np.max(gap) + 1e-300)


class _Fixed:
    """Scores fixed per candidate (a receding-horizon set): ``score`` ignores std and gap."""

    def __init__(self, name: str, scores: np.ndarray):
        self.name, self._s = name, np.asarray(scores, dtype=float)

    def score(self, sd=None, gap=None) -> np.ndarray:
        return self._s


def _nearest_distance(u: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance (m,) from each row of ``u`` to the nearest row of ``points``."""
    from scipy.spatial import cKDTree

    if len(points) == 0:
        return np.ones(len(u))
    return cKDTree(points).query(u, k=1)[0]
