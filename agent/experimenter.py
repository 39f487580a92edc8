"""A plain-Python face on the Engine, as short as gpCAM's classic AutonomousExperimenterGP::

    ae = AutonomousExperimenter(instrument, bounds={"x": (-5, 5), "y": (-5, 5)})
    ae.go(N=100)            # instrument(points: list[dict]) -> list[dict | float]
    mean, var = ae.posterior(grid)

``instrument`` receives a list of {coordinate: value} points and returns, per point, either a
float, a dict of values ({"value": 0.3}), or a dict with "values"/"variances" keys. An
exception raised for the whole batch, or a ``None`` entry, is recorded as a failed
measurement, not a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agent.config import make_engine_config
from agent.engine import Engine
from agent.messages import Measurement

Instrument = Callable[[list[dict[str, float]]], list[Any]]


class AutonomousExperimenter:
    """Runs an instrument function in a loop driven by one Engine (see module doc)."""

    def __init__(self, instrument: Instrument, bounds: dict[str, tuple[float, float]],
                 acquisition: str | Callable | None = "mapping", value: str = "value",
                 batch_size: int = 1, velocity: dict[str, float] | None = None,
                 units: dict[str, str] | None = None, **engine_options: Any):
        self.instrument = instrument
        self.batch_size = batch_size
        self._base = {
            "coordinates": [{"name": n, "low": lo, "high": hi,
                             "units": (units or {}).get(n, ""),
                             "velocity": (velocity or {}).get(n)}
                            for n, (lo, hi) in bounds.items()],
            "value": value, "acquisition": acquisition,
            "mode": "mapping" if acquisition in ("mapping", "variation", "variance")
            else "optimisation",
            **engine_options}
        self.engine: Engine | None = None
        self._seq = 0
        self._position: dict[str, float] | None = None

    def go(self, N: int, max_time_s: float | None = None,
           target_uncertainty: float | None = None) -> str:
        """Measure until N successful points (total) or another stop condition; returns why."""
        stop = {"max_points": N, "max_time_s": max_time_s,
                "target_uncertainty": target_uncertainty}
        config = make_engine_config({**self._base, "stop": stop})
        old = self.engine
        self.engine = Engine.from_measurements(config, old.measurements if old else [])
        if old is not None:
            old.close()
        while True:
            prop = self.engine.ask(self.batch_size, current_position=self._position)
            if prop.phase == "done":
                return prop.stop_reason or "done"
            for point, result in zip(prop.points, self._measure(prop.points), strict=True):
                self.engine.tell(self._measurement(point, result))
                self._seq += 1
            self._position = prop.points[-1]

    def _measure(self, points: list[dict[str, float]]) -> list[Any]:
        try:
            results = list(self.instrument(points))
        except Exception as exc:  # a failed instrument call is data
            return [exc] * len(points)
        if len(results) != len(points):
            return [ValueError(f"instrument returned {len(results)} results for "
                               f"{len(points)} points")] * len(points)
        return results

    def _measurement(self, point: dict[str, float], result: Any) -> Measurement:
        name = self._base["value"]
        common = {"run_uid": "experimenter", "seq": self._seq, "positions": point}
        if result is None or isinstance(result, Exception):
            return Measurement(**common, failure=repr(result)[:500])
        if isinstance(result, int | float | np.floating):
            return Measurement(**common, values={name: float(result)})
        if "values" in result:
            return Measurement(**common, values=result["values"],
                               variances=result.get("variances"))
        return Measurement(**common, values={k: float(v) for k, v in result.items()})

    def posterior(self, points: np.ndarray | list[dict[str, float]]
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (m,) and variance (m,) at (m, d) points or a list of {name: value}."""
        if self.engine is None:
            raise RuntimeError("posterior: call go() first")
        if isinstance(points, list) and points and isinstance(points[0], dict):
            points = np.array([[p[n] for n in self.engine.space.names] for p in points])
        return self.engine.posterior(np.asarray(points, dtype=float))

    @property
    def x_data(self) -> np.ndarray:
        """(N, d) successful measurement positions, engineering units."""
        ms = [m for m in self.engine.measurements if m.failure is None] if self.engine else []
        names = self.engine.space.names if self.engine else []
        return np.array([[m.positions[n] for n in names] for m in ms])

    @property
    def y_data(self) -> np.ndarray:
        """(N,) successful measurement values."""
        if self.engine is None:
            return np.array([])
        return np.array([m.values[self._base["value"]] for m in self.engine.measurements
                         if m.failure is None])

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
