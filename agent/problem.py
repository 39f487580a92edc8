"""The problem a run brings (coordinates, bounds, units, velocities, value) and the model
settings an agent YAML holds, joined into one ``EngineConfig`` per session.

An agent YAML's ``engine:`` section needs only the model settings (acquisition, kernel,
training, stop, ...). Its ``coordinates`` and ``value``, if given, are the default problem:
served to clients that never start a session, and a constraint on those that do (a plan's
problem must then match them: same names, bounds and units, same value).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agent.config import (
    ConfigError,
    CoordinateConfig,
    EngineConfig,
    RunBudget,
    make_engine_config,
)

PROBLEM_KEYS = ("coordinates", "value")
# stands in for the problem while the model settings alone are validated
_PLACEHOLDER = {"coordinates": [{"name": "_", "low": 0.0, "high": 1.0}], "value": "_"}


class ProblemMismatch(ConfigError):
    """A problem unlike the one it must equal (names the field, both values)."""


class Problem(BaseModel):
    """What a run measures: its coordinates (names, bounds and units of the motors, their
    velocities for travel cost) and the name of the modelled value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    coordinates: list[CoordinateConfig] = Field(min_length=1, max_length=12)
    value: Annotated[str, Field(min_length=1, max_length=64)]
    budget: RunBudget | None = Field(
        default=None, description="the run's budget (gp_scan's max_points, max_time_s; the "
        "plan enforces it): the engine's config.budget, which sizes a budget-sized design")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.coordinates]

    def check_same(self, other: Problem, what: str, velocities: bool = False) -> None:
        """Raise ProblemMismatch naming the first field in which ``self`` (the request)
        differs from ``other`` (``what``: the session or the agent's default problem).
        Velocities are compared only if asked (they are travel-cost hints)."""
        if self.names != other.names:
            raise ProblemMismatch(f"coordinates {self.names} differ from {what}'s "
                                  f"{other.names}")
        for mine, theirs in zip(self.coordinates, other.coordinates, strict=True):
            for key in ("low", "high", "units") + (("velocity",) if velocities else ()):
                a, b = getattr(mine, key), getattr(theirs, key)
                same = a == b or (isinstance(a, float) and isinstance(b, float)
                                  and math.isclose(a, b))
                if not same:
                    raise ProblemMismatch(f"coordinate {mine.name!r}: {key}={a!r} differs "
                                          f"from {what}'s {key}={b!r}")
        if self.value != other.value:
            raise ProblemMismatch(f"value={self.value!r} differs from {what}'s "
                                  f"value={other.value!r}")


class ModelSettings:
    """An ``engine:`` section: the model settings, and the default problem if it names one.

    ``template`` is an EngineConfig whose problem is a placeholder unless ``default`` is
    given; ``engine_config(problem)`` joins the settings with a run's problem.
    """

    def __init__(self, template: EngineConfig, default: Problem | None):
        self.template, self.default = template, default

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> ModelSettings:
        """Validate an ``engine:`` mapping. Raises ConfigError naming the key and value."""
        if not isinstance(section, dict):
            raise ConfigError(f"engine: expected a mapping, got {type(section).__name__}")
        if any(k in section for k in PROBLEM_KEYS):
            missing = [k for k in PROBLEM_KEYS if k not in section]
            if missing:
                raise ConfigError(f"engine: {missing[0]} missing; coordinates and value "
                                  "form the default problem together (give both or neither)")
            return cls.from_config(make_engine_config(section, "engine"))
        return cls(make_engine_config({**section, **_PLACEHOLDER}, "engine"), None)

    @classmethod
    def from_config(cls, config: EngineConfig) -> ModelSettings:
        problem = Problem(coordinates=config.coordinates, value=config.value)
        return cls(config, problem)

    def engine_config(self, problem: Problem | None = None, check_default: bool = True
                      ) -> EngineConfig:
        """The settings joined with ``problem`` (default: the default problem). Raises
        ConfigError when there is neither, or (``check_default``) ProblemMismatch if the
        default problem differs."""
        if problem is None:
            if self.default is None:
                raise ConfigError("no problem: the agent config names no coordinates and "
                                  "the request started no session")
            return self.template
        if self.default is not None and check_default:
            problem.check_same(self.default, "the agent config")
        settings = {k: v for k, v in dict(self.template).items() if k not in PROBLEM_KEYS}
        return EngineConfig.model_validate({**settings, **dict(problem)})

    def to_jsonable(self) -> dict[str, Any]:
        """The settings (and default problem, if any) as the ``config`` reply gives them."""
        data = self.template.to_jsonable()
        if self.default is None:
            for key in PROBLEM_KEYS:
                data.pop(key)
        return data


def as_model_settings(config: EngineConfig | ModelSettings | dict) -> ModelSettings:
    """Whatever the service was given, as ModelSettings."""
    if isinstance(config, ModelSettings):
        return config
    if isinstance(config, EngineConfig):
        return ModelSettings.from_config(config)
    return ModelSettings.from_section(config)
