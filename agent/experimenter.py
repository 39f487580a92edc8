"""A plain-Python face on the Engine, as short as gpCAM's classic AutonomousExperimenterGP::

    ae = AutonomousExperimenter(instrument, bounds={"x": (-5, 5), "y": (-5, 5)})
    ae.go(N=100)            # instrument(points: list[dict]) -> list[float | dict] or None
    mean, var = ae.posterior(grid)

    ae = AutonomousExperimenter.from_config("configs/agent.yaml", instrument)  # its engine:

``bounds`` is {name: (low, high)} or, as gpCAM's ``parameters``, an array (d, 2) whose
coordinates are named x0, x1, ... (or ``names``).

``instrument`` receives a list of points, dicts {coordinate: value} in engineering units. Per
point it returns a number, a dict ({"value": 0.3, "variance": 1e-4}, or {"values": {...},
"variances": {...}}), or it fills the point's dict in place as gpCAM's instrument does
(``entry["value"] = ...``, optionally ``entry["variance"]``; gpCAM 8's "y_data" and "noise
variance" too) and returns the list or None. ``entry["position"]`` (or ``entry["x_data"]``)
reads the point as an array in coordinate order. "value"/"y_data" name the modelled value
whatever ``value`` is called. An exception raised for the whole batch, a ``None`` entry or a
result without the value is recorded as a failed measurement, not a crash; after
``max_consecutive_failures`` failed points in a row ``go`` raises InstrumentError.

Reproducibility: by default (``reproducible=True``) hyperparameters are trained in the
foreground, so the same seed gives the same points and posterior. The price: ``go`` pauses
for each training (the doubling schedule trains ~log2(N / first_at) times; seconds at a few
hundred points) instead of overlapping it with measurements. ``reproducible=False`` trains in
the background (decisions never wait), and then which hyperparameters a proposal used
depends on thread timing, so runs with one seed differ.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from agent.config import (
    ACQUISITION_NAMES,
    ConfigError,
    load_engine_config,
    make_engine_config,
)
from agent.engine import MAPPING_ACQUISITIONS, Engine
from agent.errors import AgentError
from agent.messages import Measurement

Instrument = Callable[[list[dict[str, Any]]], Any]

DEFAULT_MAX_CONSECUTIVE_FAILURES = 10
TRAINING_WAIT_S = 600.0  # go() waits this long for a background training before it returns
#: keys an instrument fills with the modelled value and its variance (gpCAM 7, gpCAM 8)
VALUE_KEYS = ("value", "y_data")
VARIANCE_KEYS = ("variance", "noise variance", "noise_variance")
#: keys that read a point as an array in coordinate order (gpCAM 7, gpCAM 8)
POSITION_KEYS = ("position", "x_data")
#: gpCAM AutonomousExperimenterGP arguments with no counterpart here, and what to use instead
GPCAM_HINTS = {
    "init_hyperparameters": "no starting values are needed: hyperparameters are trained on "
    "the schedule in training= (e.g. training={'first_at': 10})",
    "hyperparameter_bounds": "use training={'length_scale_bounds': (low, high)}, length "
    "scales as fractions of each coordinate's range",
    "acquisition_function": "use acquisition= (a name or a callable)",
}


class InstrumentError(RuntimeError, AgentError):
    """The instrument failed too many points in a row (names the count, limit and failure)."""


class _Point(dict):
    """A point {name: value} handed to the instrument. ``entry["position"]`` and
    ``entry["x_data"]`` give the coordinates as an array (gpCAM's instrument contract)
    without being keys, so iterating the point still yields only the coordinates."""

    def __init__(self, point: dict[str, float], names: list[str]):
        super().__init__(point)
        self._names = names

    def __missing__(self, key: str) -> np.ndarray:
        if key in POSITION_KEYS:
            return np.array([dict.__getitem__(self, n) for n in self._names])
        raise KeyError(key)


class AutonomousExperimenter:
    """Runs an instrument function in a loop driven by one Engine (see module doc).

    ``engine_options`` are EngineConfig keys (seed, kernel, training, initial_design, ...);
    nested sections are merged key by key. ``init_dataset_size`` (gpCAM's name) sets
    initial_design.n_points. Raises ConfigError naming the key and value for a bad option.
    """

    def __init__(self, instrument: Instrument,
                 bounds: Mapping[str, tuple[float, float]] | np.ndarray,
                 acquisition: str | Callable = "mapping", value: str = "value",
                 batch_size: int = 1, velocity: dict[str, float] | None = None,
                 units: dict[str, str] | None = None, names: list[str] | None = None,
                 reproducible: bool = True,
                 max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
                 **engine_options: Any):
        if acquisition is None:  # the engine would pick by mode, and mode follows from it
            raise ConfigError(
                "acquisition=None: name one, e.g. 'mapping' (the default: map the whole "
                f"space) or 'ucb' (look for the maximum); one of {list(ACQUISITION_NAMES)} "
                "or a callable")
        base = {"coordinates": _coordinates(bounds, names, units or {}, velocity or {}),
                "value": value, "acquisition": acquisition, "mode": _mode(acquisition)}
        self._setup(instrument, base, engine_options, batch_size, reproducible,
                    max_consecutive_failures)

    @classmethod
    def from_config(cls, path: str | Path, instrument: Instrument, *, batch_size: int = 1,
                    reproducible: bool = True,
                    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
                    **engine_options: Any) -> AutonomousExperimenter:
        """The ``engine:`` section of an agent YAML (e.g. configs/agent.yaml) as the settings;
        ``engine_options`` override its keys. Its stop section is what ``go()`` without
        arguments uses. Raises ConfigError naming the key and value."""
        section = load_engine_config(path).model_dump(exclude_unset=True)
        self = cls.__new__(cls)
        self._setup(instrument, section, engine_options, batch_size, reproducible,
                    max_consecutive_failures)
        return self

    def _setup(self, instrument: Instrument, base: dict, options: dict, batch_size: int,
               reproducible: bool, max_consecutive_failures: int) -> None:
        if not callable(instrument):
            raise ConfigError(f"instrument must be callable, got {type(instrument).__name__}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        if max_consecutive_failures < 1:
            raise ConfigError(f"max_consecutive_failures={max_consecutive_failures} "
                              "must be >= 1")
        data = _merged(base, _gpcam_aliases(dict(options)))
        if reproducible:
            data["training"] = _foreground(data.get("training") or {})
        self._stop = data.pop("stop", None)
        make_engine_config({**data, "stop": self._stop or {"max_points": 1}})  # fail early
        self.instrument = instrument
        self.batch_size = batch_size
        self.max_consecutive_failures = max_consecutive_failures
        self._base = data
        self._names = [c["name"] for c in data["coordinates"]]
        self.engine: Engine | None = None
        self._seq = 0
        self._position: dict[str, float] | None = None

    # ---------------------------------------------------------------- run
    def go(self, N: int | None = None, max_time_s: float | None = None,
           target_uncertainty: float | None = None) -> str:
        """Measure until N successful points (total) or another stop condition; returns why.

        Without arguments the config's stop section is used (``from_config``). On return no
        training is running: ``posterior`` uses a model of every measurement told. Raises
        InstrumentError after ``max_consecutive_failures`` failed points in a row (the
        measurements stay in ``.engine``), ConfigError without any stop condition.
        """
        stop = {k: v for k, v in (("max_points", N), ("max_time_s", max_time_s),
                                  ("target_uncertainty", target_uncertainty)) if v is not None}
        if not stop and not self._stop:
            raise ConfigError("go: no stop condition; give N (successful points in total), "
                              "max_time_s or target_uncertainty")
        config = make_engine_config({**self._base, "stop": stop or self._stop})
        old = self.engine
        self.engine = Engine.from_measurements(config, old.measurements if old else [])
        if old is not None:
            old.close()
        reason = self._loop()
        if not self.engine.wait_for_training(TRAINING_WAIT_S):
            raise AgentError(f"go: hyperparameter training still running after "
                             f"{TRAINING_WAIT_S} s")
        return reason

    def _loop(self) -> str:
        failures = 0
        while True:
            prop = self.engine.ask(self.batch_size, current_position=self._position)
            if prop.phase == "done":
                return prop.stop_reason or "done"
            for point, result in zip(prop.points, self._measure(prop.points), strict=True):
                m = self._measurement(point, result)
                self.engine.tell(m)
                self._seq += 1
                failures, last = (failures + 1, m) if m.failure else (0, None)
            self._position = prop.points[-1]
            if failures >= self.max_consecutive_failures:
                n_ok = len(self.y_data)
                raise InstrumentError(
                    f"instrument failed {failures} consecutive points "
                    f"(max_consecutive_failures={self.max_consecutive_failures}); the last "
                    f"at {last.positions}: {last.failure}. {n_ok} successful measurements "
                    "are kept in .engine; fix the instrument and call go() again")

    def _measure(self, points: list[dict[str, float]]) -> list[Any]:
        """The instrument's result per point (an exception is a result). It gets copies,
        so what it writes into them never reaches the proposal's points."""
        entries = [_Point(p, self._names) for p in points]
        try:
            returned = self.instrument(entries)
        except Exception as exc:  # a failed instrument call is data
            return [exc] * len(points)
        if returned is None:  # filled in place, as gpCAM's instrument may
            return entries
        try:
            results = list(returned)
        except TypeError:
            results = [TypeError(f"instrument returned {type(returned).__name__}, expected "
                                 "a list with one result per point, or None")] * len(points)
        if len(results) != len(points):
            results = [ValueError(f"instrument returned {len(results)} results for "
                                  f"{len(points)} points")] * len(points)
        return results

    def _measurement(self, point: dict[str, float], result: Any) -> Measurement:
        common = {"run_uid": "experimenter", "seq": self._seq, "positions": point}
        outcome = self._outcome(result)
        if isinstance(outcome, str):
            return Measurement(**common, failure=outcome[:500])
        try:
            return Measurement(**common, values=outcome[0], variances=outcome[1])
        except ValidationError as exc:  # NaN, a negative variance: a failed measurement
            why = "; ".join(f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                            for e in exc.errors()[:3])
            return Measurement(**common, failure=f"invalid instrument result: {why}"[:500])

    def _outcome(self, result: Any) -> tuple[dict, dict | None] | str:
        """(values, variances) from one instrument result, or the reason it failed."""
        if isinstance(result, Exception):
            return repr(result)
        if result is None:
            return "instrument returned None for this point"
        name = self._base["value"]
        if isinstance(result, numbers.Real) and not isinstance(result, bool):
            return {name: float(result)}, None
        if not isinstance(result, Mapping):
            return f"instrument result {result!r} is neither a number nor a dict"
        d = {k: v for k, v in result.items() if k not in self._names}
        try:
            if "values" in d:
                return (_floats(d["values"]),
                        None if d.get("variances") is None else _floats(d["variances"]))
            return self._classic(d, name)
        except (TypeError, ValueError) as exc:
            return f"instrument result {d!r}: {exc}"

    @staticmethod
    def _classic(d: dict, name: str) -> tuple[dict, dict | None] | str:
        """A dict of values, "value"/"y_data" standing for ``name``, "variance" for its
        variance; other numbers are kept as further values."""
        v_key = name if name in d else next((k for k in VALUE_KEYS if k in d), None)
        if v_key is None:
            return (f"instrument gave no {name!r} for this point (got keys {sorted(d)}); "
                    f"return a number or fill entry[{name!r}]")
        var_key = next((k for k in VARIANCE_KEYS if k in d), None)
        values = {name: float(d[v_key])}
        values.update({k: float(v) for k, v in d.items() if k not in (v_key, var_key)
                       and isinstance(v, numbers.Real) and not isinstance(v, bool)})
        return values, None if var_key is None else {name: float(d[var_key])}

    # ---------------------------------------------------------------- results
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


def _mode(acquisition: str | Callable) -> str:
    return "mapping" if acquisition in MAPPING_ACQUISITIONS else "optimisation"


def _coordinates(bounds, names: list[str] | None, units: dict[str, str],
                 velocity: dict[str, float]) -> list[dict]:
    """Coordinate configs from {name: (low, high)} or a gpCAM array (d, 2) named by
    ``names`` (default x0, x1, ...). Raises ConfigError naming the shape or the name."""
    if isinstance(bounds, Mapping):
        if names is not None:
            raise ConfigError(f"names={names!r} is for an array of bounds; the keys of a "
                              f"bounds dict already name the coordinates ({list(bounds)})")
        pairs = list(bounds.items())
    else:
        try:
            arr = np.asarray(bounds, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bounds: not an array of (low, high) rows: {exc}") from None
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ConfigError("bounds: expected {name: (low, high)} or an array of shape "
                              f"(d, 2) like gpCAM's parameters, got shape {arr.shape}")
        names = [f"x{i}" for i in range(len(arr))] if names is None else list(names)
        if len(names) != len(arr):
            raise ConfigError(f"names: {len(names)} names for {len(arr)} rows of bounds")
        pairs = list(zip(names, arr.tolist(), strict=True))
    for what, given in (("units", units), ("velocity", velocity)):
        unknown = sorted(set(given) - {n for n, _ in pairs})
        if unknown:
            raise ConfigError(f"{what}: unknown coordinate(s) {unknown}; the coordinates are "
                              f"{[n for n, _ in pairs]}")
    coords = []
    for n, pair in pairs:
        if np.shape(pair) != (2,):
            raise ConfigError(f"bounds[{n!r}]={pair!r}: expected (low, high)")
        coords.append({"name": n, "low": float(pair[0]), "high": float(pair[1]),
                       "units": units.get(n, ""), "velocity": velocity.get(n)})
    return coords


def _gpcam_aliases(options: dict) -> dict:
    """gpCAM's names: init_dataset_size becomes initial_design.n_points; the others are
    refused with what to use instead (ConfigError)."""
    for key, hint in GPCAM_HINTS.items():
        if key in options:
            raise ConfigError(f"{key}: gpCAM's AutonomousExperimenterGP argument has no "
                              f"counterpart here; {hint}")
    size = options.pop("init_dataset_size", None)
    if size is not None:
        design = dict(options.get("initial_design") or {})
        if design.get("n_points", size) != size:
            raise ConfigError(f"init_dataset_size={size} contradicts initial_design.n_points="
                              f"{design['n_points']}; give one of them")
        options["initial_design"] = {**design, "n_points": size}
    return options


def _foreground(training: dict) -> dict:
    """The training section with background training off (reproducible mode)."""
    if training.get("background") is True:
        raise ConfigError("training.background=True contradicts reproducible=True: a "
                          "background training lands at a time set by thread scheduling, so "
                          "runs differ; pass reproducible=False to train in the background")
    return {**training, "background": False}


def _merged(base: dict, options: dict) -> dict:
    """``base`` with ``options`` on top; dict sections (training, ...) merged key by key."""
    out = dict(base)
    for key, value in options.items():
        old = out.get(key)
        both = isinstance(value, dict) and isinstance(old, dict)
        out[key] = {**old, **value} if both else value
    return out


def _floats(values: Mapping) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}
