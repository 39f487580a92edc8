"""Engine configuration: the problem (coordinates, bounds, value), the decision policy and the
stop conditions, validated by pydantic with unknown keys refused.

Load the ``engine:`` section of an agent YAML with :func:`load_engine_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import AgentError

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: a share of a budget or of points: in (0, 1]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]

#: acquisition names understood by the engine (gpCAM's names plus our mapping acquisitions)
ACQUISITION_NAMES = (
    "mapping", "variation", "log_std", "variance", "ucb", "lcb", "maximum", "minimum",
    "expected improvement", "probability of improvement",
)


class ConfigError(ValueError, AgentError):
    """An engine configuration that cannot be used (names the key, the value and the rule)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class CoordinateConfig(_Strict):
    """One coordinate of the search space, in engineering units."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    low: Finite
    high: Finite
    units: str = ""
    velocity: PositiveFloat | None = Field(
        default=None, description="units/s, for travel cost; None means moves are free")
    resolution: PositiveFloat | None = Field(
        default=None, description="units: the smallest useful spacing along this coordinate "
        "(e.g. the beam footprint). The model-based phase proposes no point closer than "
        "this to a measured or pending one, so a resolved feature is not sampled further. "
        "None: pending_tolerance alone")

    @model_validator(mode="after")
    def _ordered(self) -> CoordinateConfig:
        if not self.low < self.high:
            raise ValueError(f"coordinate {self.name!r}: low={self.low} must be < high={self.high}")
        return self


class InitialDesignConfig(_Strict):
    """Space-filling start-up design (scipy.stats.qmc), run before the GP takes over."""

    method: Literal["sobol", "lhs", "raster"] = Field(
        default="sobol", description="raster: a coarse serpentine grid, the cheapest coverage "
        "when moves cost time (finds localized features the GP cannot know of)")
    n_points: int = Field(default=16, ge=2, le=10_000)
    budget_fraction: Fraction | None = Field(
        default=None, description="raster only: the largest full raster (within n_points) "
        "that fits this fraction of the run's budget (its plan's, else stop's): of "
        "max_points and of max_time_s (beamtime by the travel model: velocities, "
        "overhead_s). A run that knows its budget covers the sample at the finest spacing "
        "it can afford. None: a third of max_points")
    localised_share: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Field(
        default=None, description="raster only: run the raster in two interleaved passes "
        "(even rows, then odd rows) and skip the second pass when, after the first, the "
        "tenth of its points with the largest plane residuals hold at least this share of "
        "the residuals (agent.design.residual_share): walls and isolated peaks gain from "
        "adaptive points, while an area-filling map is measured best by completing the "
        "raster. None: one pass")
    plateau_share: Fraction | None = Field(
        default=None, description="with localised_share: also skip the second pass when at "
        "least this share of the first pass's points lie on plateaus (plane residual within "
        "3 noise std; agent.design.plateau_share): walls between plateaus are localised even "
        "where a coarse first pass crosses so much wall that its residuals look spread. "
        "None: residual_share alone decides")

    @model_validator(mode="after")
    def _plateaus_need_two_passes(self) -> InitialDesignConfig:
        if self.plateau_share is not None and self.localised_share is None:
            raise ValueError(f"plateau_share={self.plateau_share} needs localised_share (the "
                             "two-pass raster whose second pass it may skip)")
        return self

    @property
    def interleaved(self) -> bool:
        """The raster runs in two passes with a decision between them."""
        return self.method == "raster" and self.localised_share is not None


class TrainingConfig(_Strict):
    """Hyperparameter training schedule. Training runs in a background thread on a snapshot.

    ``schedule="doubling"`` trains at N = first_at, 2*first_at, 4*first_at, ...;
    ``"every"`` trains at first_at and then every ``every`` new points.
    Length scales are in normalised coordinates ([0, 1] per coordinate).
    """

    schedule: Literal["doubling", "every"] = "doubling"
    first_at: int = Field(default=10, ge=2)
    every: int = Field(default=50, ge=1)
    max_points: int | None = Field(default=None, ge=2, description="no training beyond this N")
    n_restarts: int = Field(default=3, ge=1)
    max_iter: int = Field(default=200, ge=1)
    length_scale_bounds: tuple[PositiveFloat, PositiveFloat] = (0.005, 2.0)
    length_scale_floor: Fraction | None = Field(
        default=None, description="raise the lower length-scale bound to this fraction of "
        "the measured points' median nearest-neighbour distance (agent.training."
        "length_scale_floor): the data say nothing about correlation at shorter range, and a "
        "length scale there makes the posterior mean fall back to the prior between "
        "neighbouring points. None: length_scale_bounds alone")
    background: bool = True


class StopConfig(_Strict):
    """Stop conditions; at least one must be set."""

    max_points: int | None = Field(default=None, ge=1, description="successful measurements")
    max_time_s: PositiveFloat | None = None
    target_uncertainty: PositiveFloat | None = Field(
        default=None, description="posterior std target over a check grid, value units")
    uncertainty_statistic: Literal["max", "mean"] = "max"


class RunBudget(_Strict):
    """A run's budget as its plan states it (gp_scan's max_points and max_time_s). The plan
    enforces it; the engine sizes a budget-sized start-up design to it."""

    max_points: int | None = Field(default=None, ge=1, description="points")
    max_time_s: PositiveFloat | None = Field(default=None, description="s of beamtime")


class EngineConfig(_Strict):
    """The decision engine's configuration. Refuses to validate without a stop condition."""

    coordinates: list[CoordinateConfig] = Field(min_length=1, max_length=12)
    value: Annotated[str, Field(min_length=1)]
    mode: Literal["mapping", "optimisation"] = "mapping"
    acquisition: str | Callable[..., Any] | None = Field(
        default=None, description="name or callable f(x_normalised (m,d), gp) -> (m,); "
        "None picks 'mapping' or 'ucb' by mode")
    model: Literal["gp", "log_gp"] = Field(
        default="gp", description="'log_gp' models log(value) (gpCAM LogGPOptimizer): for "
        "positive signals with localized peaks; values <= 0 are floored at LOG_FLOOR*max")
    kernel: Literal["matern32", "matern12", "matern52", "multiscale", "auto"] = Field(
        default="matern32", description="matern32 (gpCAM's default), matern12, matern52: "
        "anisotropic Matern; multiscale: long- plus short-range isotropic Matern 3/2; auto: "
        "each training fits multiscale, matern52 and matern12 and keeps the one with the "
        "largest log marginal likelihood (type-II maximum likelihood model selection, "
        "Rasmussen & Williams 2006, section 5.4): matern52 on smooth maps, multiscale or "
        "matern12 on walls (matern12 keeps the edges between plateaus sharpest)")
    prior_mean: Literal["data_mean", "area_median"] = Field(
        default="data_mean", description="GP prior mean: gpCAM's mean of the data, or the "
        "median over space (points weighted by the area they stand for): where features are "
        "localized an adaptive design crowds them, which biases the data mean")
    exploration: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        default=0.0, description="mapping acquisitions: weight of a coverage term, the distance "
        "to the nearest measured point, added to the max-normalised score; finds features "
        "that the model has not seen at all (the GP's std is small where it believes the map "
        "is flat)")
    mapping_gain: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        default=2.0, description="'mapping' acquisition: std * (1 + gain * (|mu - median| + "
        "ell * |grad mu|) / data range); 0 is plain posterior std")
    variation_floor: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        default=0.5, description="'variation' acquisition gap * (local range / data range + "
        "floor): the floor keeps covering quiet regions")
    variation_measure: Literal["range", "residual"] = Field(
        default="range", description="'variation' acquisition's local term: 'range' of the k "
        "nearest measured values (~ gradient * spacing: keeps refining resolved slopes), or "
        "'residual': the largest leave-one-out residual of a local plane fit among them "
        "(~ curvature * spacing^2: refines where the map is not yet resolved)")
    coverage_boundary: Literal["free", "mirror"] = Field(
        default="free", description="coverage gap ('variation', exploration) at the edges of "
        "the space: 'free' is the distance to the nearest measured point, so the largest gaps "
        "lie on the boundary and a max-gap design crowds it; 'mirror' also counts the "
        "candidate's mirror image across the nearest edge (gap <= 2 * distance to the edge), "
        "which puts points half a spacing inside the edges like a centred grid")
    travel_horizon: int | None = Field(
        default=None, ge=2, le=10_000, description="receding horizon for travel: choose the "
        "travel_horizon best points for the map as a set (greedy, travel ignored), then the "
        "next point(s) by acquisition per second among that set alone. Acquisition per "
        "second over all candidates is myopic: it fills the neighbourhood of the motors "
        "with low-value points before paying one long move; the set only holds points worth "
        "measuring. None: per second over all candidates")
    travel_exponent: Annotated[float, Field(ge=0, le=4, allow_inf_nan=False)] = Field(
        default=1.0, description="acquisition / (overhead_s + move time)^exponent: 1 is "
        "acquisition per second of beamtime; > 1 prefers nearby points more strongly")
    ucb_beta: PositiveFloat = Field(default=3.0, description="gpCAM's ucb/lcb factor")
    initial_design: InitialDesignConfig = InitialDesignConfig()
    training: TrainingConfig = TrainingConfig()
    stop: StopConfig
    budget: RunBudget | None = Field(
        default=None, description="the run's budget, set by its plan: sizes a budget-sized "
        "start-up design (initial_design.budget_fraction) in place of stop")
    seed: int = 0
    overhead_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=0.0, description="per-point time besides motion (exposure, settling), s")
    default_noise_variance: PositiveFloat | None = Field(
        default=None, description="value units^2, for measurements without a variance; "
        "None uses (1e-2 * std of the values)^2")
    n_candidates: int = Field(default=1000, ge=50, le=100_000)
    decision_flops: PositiveFloat = Field(
        default=2e8, description="budget m*N^2 that caps the candidate count m at large N")
    pending_tolerance: PositiveFloat = Field(
        default=0.01, description="fraction of each range within which a measurement clears a "
        "pending point and within which no point is proposed twice")

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        names = [c.name for c in self.coordinates]
        if len(set(names)) != len(names):
            raise ValueError(f"coordinate names must be unique, got {names}")
        s = self.stop
        if s.max_points is None and s.max_time_s is None and s.target_uncertainty is None:
            raise ValueError("no stop condition: set stop.max_points, stop.max_time_s or "
                             "stop.target_uncertainty (a run without one is refused)")
        if isinstance(self.acquisition, str) and self.acquisition not in ACQUISITION_NAMES:
            raise ValueError(f"acquisition {self.acquisition!r} unknown; "
                             f"choose one of {list(ACQUISITION_NAMES)} or pass a callable")
        return self

    @property
    def acquisition_name(self) -> str:
        """The acquisition's name as recorded in proposals."""
        if self.acquisition is None:
            return "mapping" if self.mode == "mapping" else "ucb"
        if isinstance(self.acquisition, str):
            return self.acquisition
        return getattr(self.acquisition, "__name__", "callable")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.coordinates]

    def to_jsonable(self) -> dict:
        """JSON-able dict; a callable acquisition is recorded by name only."""
        data = self.model_dump(mode="json", exclude={"acquisition"})
        data["acquisition"] = self.acquisition_name if self.acquisition is not None else None
        return data


def make_engine_config(data: dict, section: str = "") -> EngineConfig:
    """Validate a dict into an EngineConfig. Raises ConfigError naming the key (prefixed with
    ``section.``, e.g. "engine.stop", when given) and value."""
    try:
        return EngineConfig.model_validate(data)
    except ValidationError as exc:
        def where(loc) -> str:
            key = ".".join(map(str, loc))
            return ".".join(filter(None, (section, key))) or "<engine>"
        parts = [f"{where(e['loc'])}={e.get('input')!r}: {e['msg']}" for e in exc.errors()[:5]]
        raise ConfigError("invalid engine config: " + "; ".join(parts)) from None


def load_engine_config(path: str | Path) -> EngineConfig:
    """Load the ``engine:`` section of an agent YAML file (or a bare engine YAML).

    Raises ConfigError if the file has no usable engine section or a key is invalid.
    """
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    section = data.get("engine", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'engine' must be a mapping, got {section!r}")
    return make_engine_config(section)
