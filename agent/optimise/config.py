"""Configuration of the alignment optimisers: one pydantic class per optimiser, its knobs as
described Fields, unknown keys refused (Xopt's shape).

Every optimiser shares :class:`Problem`: the coordinates (bounds with units), the value to
maximise, the start point (the current motor positions: alignment starts where the beamline
is), the stop condition (``max_evaluations``, required), an optional per-step travel limit and
a seed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.config import ConfigError, CoordinateConfig

Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Strict):
    """What is optimised, from where, and when to stop (shared by every optimiser)."""

    coordinates: list[CoordinateConfig] = Field(
        min_length=1, max_length=24, description="the degrees of freedom: name, low, high "
        "(engineering units), units, velocity (units/s, for travel ordering)")
    value: str = Field(min_length=1, description="the measured value to maximise "
                       "(e.g. 'flux_density'); its variance, when given, is its noise")
    start: dict[str, Finite] = Field(
        description="the current motor positions, engineering units; the first evaluation")
    max_evaluations: int = Field(
        ge=1, le=100_000, description="stop condition: evaluations, failed ones included")
    max_step_fraction: Fraction | None = Field(
        default=None, description="per-step travel limit: every proposed point lies within "
        "this fraction of each coordinate's range of the current position (or, without one, "
        "of the last proposed or measured point). None: no limit")
    seed: int = Field(default=0, description="seeds designs, candidates and training restarts")

    @model_validator(mode="after")
    def _check(self) -> Problem:
        names = [c.name for c in self.coordinates]
        if len(set(names)) != len(names):
            raise ValueError(f"coordinate names must be unique, got {names}")
        if set(self.start) != set(names):
            raise ValueError(f"start must give every coordinate {names}, got {sorted(self.start)}")
        for c in self.coordinates:
            x = self.start[c.name]
            if not c.low <= x <= c.high:
                raise ValueError(f"start {c.name}={x} {c.units} outside bounds "
                                 f"[{c.low}, {c.high}] {c.units}")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.coordinates]


class TrustRegionBOConfig(Problem):
    """Local Bayesian optimisation in a trust region (TuRBO-like) on a log-scale gpCAM GP.

    The value is modelled as log(value) with the delta-method noise variance / value^2 (from
    counting statistics when the measurement gives a variance). The trust region is a box
    around the best point, side ``length`` (fraction of each range) scaled per coordinate by
    the GP's trained length scales; it doubles after ``success_tolerance`` improvements in a
    row and halves after ``failure_tolerance`` non-improvements in a row.
    """

    kind: Literal["trust_region_bo"] = Field(default="trust_region_bo", description="the optimiser")
    n_initial: int = Field(default=8, ge=1, le=1000, description="points of the local start-up "
                           "design (scrambled Sobol in the initial trust region around start), "
                           "after the start point itself")
    length_init: Fraction = Field(default=0.2, description="initial trust-region side, "
                                  "fraction of each range")
    length_min: Fraction = Field(default=0.01, description="smallest trust-region side")
    length_max: Fraction = Field(default=0.8, description="largest trust-region side")
    success_tolerance: int = Field(default=2, ge=1, description="improvements in a row that "
                                   "double the trust region")
    failure_tolerance: int | None = Field(
        default=3, ge=1, description="non-improvements in a row that halve the trust "
        "region (measured on the optics model: 3 beat 5 and 11); None: max(4, d // 2)")
    improvement: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.01, description="relative gain over the best value that counts as success")
    acquisition: Literal["ucb", "ei", "ts"] = Field(
        default="ucb", description="on the log scale: upper confidence bound mu + beta*sd, "
        "expected improvement over the best posterior mean, or Thompson sampling")
    beta: Annotated[float, Field(ge=0, le=100)] = Field(
        default=2.0, description="ucb: mu + beta * sd (log scale)")
    n_candidates: int = Field(default=2000, ge=10, le=100_000, description="Sobol candidates "
                              "in the trust region scored per ask")
    perturb_probability: Fraction | None = Field(
        default=None, description="each candidate moves each coordinate with this "
        "probability (TuRBO's subspace perturbation); None: min(1, 20/d)")
    local_points: int = Field(default=120, ge=8, le=10_000, description="the GP is fitted to "
                              "the successful measurements nearest the trust-region centre, "
                              "at most this many (bounds the N^3 cost; local data is all a "
                              "local optimiser needs)")
    train_every: int = Field(default=8, ge=1, description="train hyperparameters every this "
                             "many new measurements (seeded restarts, on the decision path)")
    train_in_background: bool = Field(
        default=True, description="train in a thread while the next points are measured; "
        "the result is installed at the first ask with train_lag more measurements "
        "(waiting for it then), so proposals stay reproducible")
    train_lag: int = Field(default=3, ge=1, description="measurements between the start of "
                           "a background training and the ask that installs its result")
    train_restarts: int = Field(default=2, ge=1, le=50, description="local training starts")
    train_max_iter: int = Field(default=60, ge=1, description="optimiser iterations per start")
    length_scale_bounds: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (
        Field(default=(0.01, 4.0), description="GP length scales, fraction of each range"))
    log_floor: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=1e-4, description="values below log_floor * best value are floored before "
        "the log (an empty frame is 'very bad', not minus infinity)")
    default_relative_noise: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.02, description="relative noise (sd/value) for measurements without a "
        "variance; the log-scale noise variance is its square")
    min_relative_noise: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.005, description="floor on the relative noise (model error, conditioning)")
    prior_mean: Literal["data_mean", "quadratic", "full_quadratic"] = Field(
        default="data_mean", description="GP prior mean on the log scale: gpCAM's default "
        "(mean of the data), a separable concave quadratic, or a concave quadratic with "
        "cross terms (ridges), fitted by ridge least squares to the local data (a Gaussian "
        "beam's log flux is quadratic near the optimum)")
    quadratic_ridge: Annotated[float, Field(gt=0, le=100)] = Field(
        default=1e-2, description="full_quadratic: ridge penalty on the curvatures, relative")
    initial_hyperparameters: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = (
        Field(default=None, description="warm start of the GP's shape: [signal variance (log "
              "scale), one length scale per coordinate (fraction of its range)], e.g. the "
              "last 'hyperparameters' of an earlier run's proposals stream; they seed the "
              "training and stretch the trust region from the first proposal. None: "
              "learned from scratch"))
    prior_curvature: list[list[Annotated[float, Field(allow_inf_nan=False)]]] | None = Field(
        default=None, description="warm start of the GP's prior mean: the curvature H (d x d, "
        "log scale, unit-cube coordinates) of an earlier run's optimum "
        "(TrustRegionBO.curvature()); the mean is then c + g.dx + dx.H.dx/2 with only c and "
        "g fitted. Overrides prior_mean. None: not used")
    failure_distance: Fraction = Field(
        default=0.02, description="candidates closer than this (Chebyshev, fraction of range) "
        "to a failed point are not proposed")


    @model_validator(mode="after")
    def _hyperparameters_fit(self) -> TrustRegionBOConfig:
        hps = self.initial_hyperparameters
        h, d = self.prior_curvature, len(self.coordinates)
        if h is not None and (len(h) != d or any(len(row) != d for row in h)):
            raise ValueError(f"prior_curvature must be {d} x {d} (one row and column per "
                             "coordinate)")
        if hps is not None and len(hps) != len(self.coordinates) + 1:
            raise ValueError(f"initial_hyperparameters has {len(hps)} values; need "
                             f"{len(self.coordinates) + 1} (signal variance, then one length "
                             f"scale per coordinate)")
        return self


class NelderMeadConfig(Problem):
    """scipy's Nelder-Mead on -log(value), driven by ask/tell (one point per ask)."""

    kind: Literal["nelder_mead"] = Field(default="nelder_mead", description="the optimiser")
    initial_simplex_fraction: Fraction = Field(
        default=0.1, description="initial simplex: start plus start + this fraction of each "
        "range along each coordinate (clipped into the bounds)")
    adaptive: bool = Field(default=True, description="scipy's dimension-adaptive parameters")
    log_floor: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=1e-6, description="values are floored at log_floor * best before the log; a "
        "failed evaluation counts as the floor")
    xatol: Annotated[float, Field(gt=0)] = Field(default=1e-4, description="scipy xatol, "
                                                 "fraction of range")
    fatol: Annotated[float, Field(gt=0)] = Field(default=1e-4, description="scipy fatol, log "
                                                 "value units")


class RandomSearchConfig(Problem):
    """Uniform random points around the start (or in the whole box)."""

    kind: Literal["random_search"] = Field(default="random_search", description="the optimiser")
    fraction: Fraction | None = Field(
        default=0.2, description="half-width of the sampled box around start, fraction of each "
        "range (clipped into the bounds); None: the whole box")


class SequentialScanConfig(Problem):
    """Coordinate-wise 1-D relative scans with a move to the peak after each (rel_scan +
    PeakStats), several passes with shrinking widths."""

    kind: Literal["sequential_scan"] = Field(default="sequential_scan", description="the optimiser")
    points_per_scan: int = Field(default=9, ge=3, le=201, description="points of each 1-D scan")
    widths: list[Fraction] = Field(
        default=[0.4, 0.16, 0.064, 0.026], min_length=1, description="full width of the scan "
        "of each pass, fraction of each range (centred on the current value)")
    peak: Literal["max", "com", "cen"] = Field(
        default="max", description="where to move after a scan (PeakStats): the point of the "
        "maximum, the centre of mass of value - min, or the half-maximum midpoint")
    order: list[str] | None = Field(default=None, description="scan order of the coordinates; "
                                    "None: as configured")


def make_config(cls: type[Problem], data: dict) -> Problem:
    """Validate ``data`` into ``cls``. Raises ConfigError naming the key and value."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or '<config>'}={e.get('input')!r}: {e['msg']}"
                 for e in exc.errors()[:5]]
        raise ConfigError(f"invalid {cls.__name__}: " + "; ".join(parts)) from None
