"""A plain-Python face on the optimisers, a sibling of agent.experimenter's
AutonomousExperimenter::

    ao = AutonomousOptimiser(f, bounds={"x": (-5, 5), "y": (-5, 5)}, start={"x": 1, "y": 0})
    ao.go(N=100)            # f(point: dict) -> float | (value, variance) | dict | None
    point, value = ao.best

``function`` receives one {coordinate: value} point and returns the value to maximise, a
(value, variance) pair, or a dict {"value": v, "variance": var}. An exception or None is
recorded as a failed evaluation (never modelled as good), not a crash. The defaults are the
optimiser's shipped defaults (TrustRegionBO).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agent.messages import Measurement
from agent.optimise import make_optimiser
from agent.optimise.config import Problem, TrustRegionBOConfig, make_config

Function = Callable[[dict[str, float]], Any]


class AutonomousOptimiser:
    """Maximises ``function`` over ``bounds`` from ``start`` (default: the centre)."""

    def __init__(self, function: Function, bounds: dict[str, tuple[float, float]],
                 start: dict[str, float] | None = None,
                 config_class: type[Problem] = TrustRegionBOConfig,
                 units: dict[str, str] | None = None, batch_size: int = 1,
                 **options: Any):
        self.function = function
        self.batch_size = batch_size
        self._base = {
            "coordinates": [{"name": n, "low": lo, "high": hi, "units": (units or {}).get(n, "")}
                            for n, (lo, hi) in bounds.items()],
            "value": "value",
            "start": start or {n: 0.5 * (lo + hi) for n, (lo, hi) in bounds.items()},
            **options}
        self._class = config_class
        self.optimiser = None
        self._seq = 0
        self._position: dict[str, float] | None = None

    def go(self, N: int) -> str:
        """Evaluate until N evaluations in total (failed ones included); returns why it
        stopped. A second call continues with the same optimiser and a larger budget."""
        if self.optimiser is None:
            config = make_config(self._class, {**self._base, "max_evaluations": N})
            self.optimiser = make_optimiser(config)
            self._position = dict(config.start)
        else:
            self.optimiser.config = self.optimiser.config.model_copy(
                update={"max_evaluations": N})
        while True:
            prop = self.optimiser.ask(self.batch_size, current_position=self._position)
            if prop.phase == "done":
                return prop.stop_reason or "done"
            for point in prop.points:
                self.optimiser.tell(self._measurement(point, self._call(point)))
                self._seq += 1
                self._position = point

    def _call(self, point: dict[str, float]) -> Any:
        try:
            return self.function(dict(point))
        except Exception as exc:  # a failed evaluation is data
            return exc

    def _measurement(self, point: dict[str, float], result: Any) -> Measurement:
        common = {"run_uid": "optimiser", "seq": self._seq, "positions": point}
        if result is None or isinstance(result, Exception):
            return Measurement(**common, failure=repr(result)[:500])
        if isinstance(result, dict):
            value, var = result["value"], result.get("variance")
        elif isinstance(result, tuple | list):
            value, var = result
        else:
            value, var = result, None
        if not np.isfinite(value):
            return Measurement(**common, failure=f"non-finite value {value!r}")
        return Measurement(**common, values={"value": float(value)},
                           variances=None if var is None else {"value": float(var)})

    @property
    def best(self) -> tuple[dict[str, float], float] | None:
        """The best measured point and its value (None before any success)."""
        return None if self.optimiser is None else self.optimiser.best()

    @property
    def measurements(self) -> list[Measurement]:
        return [] if self.optimiser is None else self.optimiser.measurements

    def close(self) -> None:
        if self.optimiser is not None:
            self.optimiser.close()
