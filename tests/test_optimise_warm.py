"""Warm-start options of TrustRegionBO: the GP's shape (initial_hyperparameters) and the
curvature of an earlier optimum (prior_curvature)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import ConfigError
from agent.messages import Measurement
from agent.optimise import TrustRegionBO, TrustRegionBOConfig, make_config
from agent.optimise.model import FixedCurvatureMean

H = np.array([[-8.0, 2.0, 0.0], [2.0, -5.0, 1.0], [0.0, 1.0, -3.0]])


def problem(**over):
    coords = [{"name": n, "low": 0.0, "high": 1.0} for n in "abc"]
    return make_config(TrustRegionBOConfig, {
        "coordinates": coords, "value": "v", "start": {"a": 0.5, "b": 0.5, "c": 0.5},
        "max_evaluations": 50, **over})


def test_fixed_curvature_mean_fits_only_level_and_slope():
    rng = np.random.default_rng(0)
    x = rng.random((12, 3))
    g, c = np.array([0.3, -0.2, 0.5]), 1.5
    z = c + x @ g + 0.5 * np.einsum("ni,ij,nj->n", x, H, x)
    mean = FixedCurvatureMean(x, z, H, ridge=1e-9)
    test = rng.random((5, 3))
    expected = c + test @ g + 0.5 * np.einsum("ni,ij,nj->n", test, H, test)
    assert mean(test) == pytest.approx(expected, abs=1e-6)


def test_curvature_of_a_quadratic_log_objective_is_recovered():
    opt = TrustRegionBO(problem())
    rng = np.random.default_rng(1)
    for i, u in enumerate(0.3 + 0.4 * rng.random((40, 3))):
        du = u - 0.5
        y = float(np.exp(2.0 + 0.5 * du @ H @ du))
        opt.tell(Measurement(run_uid="r", seq=i, positions=dict(zip("abc", u, strict=True)),
                             values={"v": y}))
    assert opt.curvature() == pytest.approx(H, abs=0.3)
    assert TrustRegionBO(problem()).curvature() is None  # no data, no curvature


@pytest.mark.parametrize("over, message", [
    ({"prior_curvature": [[1.0, 0.0], [0.0, 1.0]]}, "3 x 3"),
    ({"initial_hyperparameters": [1.0, 0.2]}, "need 4"),
])
def test_warm_start_options_are_checked(over, message):
    with pytest.raises(ConfigError, match=message):
        problem(**over)
