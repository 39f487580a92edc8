"""training.length_scale_floor: no length scale shorter than the data's spacing can resolve."""

import numpy as np
import pytest

from agent.config import ConfigError, make_engine_config
from agent.design import raster
from agent.engine import Engine
from agent.messages import Measurement
from agent.training import length_scale_floor, length_scales


def cfg(training, kernel="matern52"):
    coord = {"low": -10, "high": 10, "units": "mm"}
    return make_engine_config({
        "coordinates": [{"name": "x", **coord}, {"name": "y", **coord}], "value": "det",
        "stop": {"max_points": 1000}, "kernel": kernel,
        "training": {"background": False, **training}})


def ripple(x, y):
    """A radial sine of 6 mm wavelength: about 2.7 samples per period on a 10 x 10 raster."""
    return 0.5 + 0.35 * np.sin(2 * np.pi * np.hypot(x - 3.0, y + 5.0) / 6.0 + 1.0)


def raster_measurements(f, k=10, noise=0.003, seed=0):
    u = raster(k * k, 2)
    xy = u * 20 - 10
    rng = np.random.default_rng(seed)
    return [Measurement(run_uid="r", seq=i, positions={"x": float(p[0]), "y": float(p[1])},
                        values={"det": float(f(*p) + rng.normal(0, noise))},
                        variances={"det": noise ** 2}) for i, p in enumerate(xy)]


def test_floor_is_the_fraction_of_the_median_nearest_neighbour_distance():
    grid = raster(100, 2)  # 10 x 10 over [0, 1]: neighbours 1/9 apart
    assert length_scale_floor(grid, 0.5) == pytest.approx(0.5 / 9)
    assert length_scale_floor(grid[:1], 0.5) == 0.0


def test_floor_must_be_a_fraction():
    with pytest.raises(ConfigError, match="training.length_scale_floor"):
        cfg({"length_scale_floor": 1.5})


def _fit(training, ms):
    grid = np.column_stack([g.ravel() for g in np.meshgrid(np.linspace(-10, 10, 81),
                                                           np.linspace(-10, 10, 81))])
    e = Engine.from_measurements(cfg(training), ms)
    e.wait_for_training()
    rmse = float(np.sqrt(np.mean((e.posterior_mean(grid) - ripple(*grid.T)) ** 2)))
    scales = length_scales(np.array(e.status()["hyperparameters"]), "matern52")
    e.close()
    return rmse, scales


def test_floor_keeps_a_near_nyquist_map_from_collapsing_to_the_mean_between_rows():
    ms = raster_measurements(ripple)
    rmse_free, free = _fit({}, ms)
    rmse_floor, floored = _fit({"length_scale_floor": 0.5}, ms)
    assert np.min(free) < 0.5 / 9  # the likelihood's choice: shorter than the data resolve
    assert np.min(floored) >= 0.5 / 9 - 1e-9
    assert rmse_floor < 0.7 * rmse_free
