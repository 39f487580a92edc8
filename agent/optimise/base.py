"""The ask/tell face shared by every optimiser (the same as agent.engine.Engine's where it
matters, so one alignment plan drives any of them).

Subclasses implement ``_propose(n, origin) -> (points (k, d) unit cube, values (k,), phase)``
and may override ``_observed(u, value, variance)`` / ``_failed_at(u)``. The base keeps the
measurements, the pending points, the best point, the stop condition and the travel limit.
"""

from __future__ import annotations

import time

import numpy as np

from agent.errors import MessageError
from agent.messages import Measurement, Proposal
from agent.optimise.config import Problem
from agent.space import Space
from agent.travel import order_path

PENDING_TOLERANCE = 1e-6  # unit cube, Chebyshev: a measurement at a pending point clears it


class AskTellOptimiser:
    """Base of the optimisers. ``tell`` ingests, ``ask`` proposes, ``best`` reports."""

    acquisition_name = "none"

    def __init__(self, config: Problem):
        self.config = config
        self.space = Space(config)
        self.d = self.space.d
        self.start = self.space.position(config.start, what="start")
        self._rng = np.random.default_rng(config.seed)
        self._measurements: list[Measurement] = []
        self._keys: set[tuple[str, int]] = set()
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._var: list[float] = []  # nan where the measurement gave none
        self._failed: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._proposal_id = 0
        self._position = self.start.copy()  # last proposed or measured point
        self.hyperparameters: list[float] = []

    # ---------------------------------------------------------------- ingest
    def tell(self, measurement: Measurement) -> None:
        """Ingest one measurement; one with ``failure`` is recorded, never modelled as good.

        Raises MessageError naming the field, value and bound. The same (run_uid, seq) twice
        is ignored.
        """
        m = measurement
        key = (m.run_uid, m.seq)
        if key in self._keys:
            return
        u = self.space.position(dict(m.positions), what=f"measurement {m.run_uid}:{m.seq}")
        if m.failure is None and self.config.value not in m.values:
            raise MessageError(f"measurement {m.run_uid}:{m.seq}: values lack "
                               f"{self.config.value!r} (got {sorted(m.values)})")
        self._keys.add(key)
        self._measurements.append(m)
        self._clear_pending(u)
        self._position = u
        if m.failure is not None:
            self._failed.append(u)
            self._failed_at(u)
            return
        y = float(m.values[self.config.value])
        var = (m.variances or {}).get(self.config.value)
        self._x.append(u)
        self._y.append(y)
        self._var.append(np.nan if var is None else float(var))
        self._observed(u, y, self._var[-1])

    def _observed(self, u: np.ndarray, y: float, var: float) -> None:
        """Hook: a successful evaluation arrived."""

    def _failed_at(self, u: np.ndarray) -> None:
        """Hook: a failed evaluation arrived."""

    def release(self, points: list[dict[str, float]]) -> int:
        """Pending points that will never be measured stop being pending; returns how many."""
        us = [self.space.position(p, what="released point") for p in points]
        before = len(self._pending)
        for u in us:
            self._clear_pending(u)
            self._released(u)
        return before - len(self._pending)

    def _released(self, u: np.ndarray) -> None:
        """Hook: a proposed point will not be measured."""

    def _clear_pending(self, u: np.ndarray) -> None:
        if not self._pending:
            return
        dist = np.max(np.abs(np.array(self._pending) - u), axis=1)
        i = int(np.argmin(dist))
        if dist[i] <= PENDING_TOLERANCE + 1e-9:
            self._pending.pop(i)

    # ---------------------------------------------------------------- propose
    @property
    def n_evaluations(self) -> int:
        return len(self._measurements)

    def stop_reason(self) -> str | None:
        """Why the run should stop (the evaluation budget), or None."""
        used = self.n_evaluations + len(self._pending)
        if used >= self.config.max_evaluations:
            return (f"max_evaluations reached: {self.n_evaluations} evaluated + "
                    f"{len(self._pending)} pending of {self.config.max_evaluations}")
        return self._own_stop_reason()

    def _own_stop_reason(self) -> str | None:
        return None

    def ask(self, n: int = 1, current_position: dict[str, float] | None = None) -> Proposal:
        """Propose up to ``n`` points in engineering units, ordered by travel from
        ``current_position``; they become pending. Phase 'done' with ``stop_reason`` once the
        budget (measured + pending) is used. Raises MessageError for n < 1 or an invalid
        current_position."""
        if n < 1:
            raise MessageError(f"ask: n={n} must be >= 1")
        t0 = time.perf_counter()
        origin = (self.space.position(current_position, what="current_position")
                  if current_position is not None else self._origin())
        reason = self.stop_reason()
        if reason is not None:
            return self._proposal(np.empty((0, self.d)), [], "done", t0, reason)
        n = min(n, self.config.max_evaluations - self.n_evaluations - len(self._pending))
        pts, vals, phase = self._propose(n, origin)
        if len(pts) == 0:  # "done": converged; otherwise waiting for pending points
            reason = (self._own_stop_reason() or "converged") if phase == "done" else None
            return self._proposal(np.empty((0, self.d)), [], phase, t0, reason)
        pts = self.limit_travel(np.atleast_2d(pts), origin)
        order = order_path(self.space.to_eng(pts), self.space.to_eng(origin), self.space.velocity)
        pts = pts[order]
        vals = [float(vals[i]) for i in order]
        self._pending.extend(pts)
        self._position = pts[-1]
        return self._proposal(pts, vals, phase, t0, None)

    def _origin(self) -> np.ndarray:
        return self._pending[-1] if self._pending else self._position

    def travel_box(self, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) in the unit cube reachable in one step from ``origin``."""
        f = self.config.max_step_fraction
        if f is None:
            return np.zeros(self.d), np.ones(self.d)
        return np.clip(origin - f, 0.0, 1.0), np.clip(origin + f, 0.0, 1.0)

    def limit_travel(self, pts: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Points clipped into the bounds and, with ``max_step_fraction``, moved (along the
        step) so that each step from the previous point stays within the limit."""
        pts = np.clip(pts, 0.0, 1.0)
        f = self.config.max_step_fraction
        if f is None:
            return pts
        out, here = [], origin
        for p in pts:  # batch points in proposal order; scaled along the step, not clipped
            step = p - here
            s = np.max(np.abs(step)) / f
            q = here + step / s if s > 1 else p
            out.append(q)
            here = q
        return np.array(out)

    def _propose(self, n: int, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError

    def _proposal(self, pts, vals, phase, t0, reason) -> Proposal:
        self._proposal_id += 1
        return Proposal(
            proposal_id=self._proposal_id, points=self.space.as_dicts(pts) if len(pts) else [],
            acquisition_function=self.acquisition_name, acquisition_values=list(vals),
            phase=phase, hyperparameters=list(self.hyperparameters),
            n_measurements=len(self._x), decision_time_s=time.perf_counter() - t0,
            stop_reason=reason)

    # ---------------------------------------------------------------- results
    @property
    def measurements(self) -> list[Measurement]:
        """All recorded measurements, failed ones included, in arrival order."""
        return list(self._measurements)

    @property
    def pending(self) -> list[dict[str, float]]:
        return self.space.as_dicts(np.array(self._pending)) if self._pending else []

    def best(self) -> tuple[dict[str, float], float] | None:
        """The best measured point (engineering units) and its value; None before any
        successful measurement."""
        if not self._y:
            return None
        i = int(np.argmax(self._y))
        return self.space.as_dicts(self._x[i][None])[0], float(self._y[i])

    def close(self) -> None:
        """Release resources; idempotent."""
