"""Each baseline improves a simple problem; the trust-region BO beats random search on the
synthetic coupled alignment problem with a small budget (benchmarks.alignment_harness)."""

import numpy as np
import pytest

from agent.optimise import (
    NelderMeadConfig,
    RandomSearchConfig,
    SequentialScanConfig,
    TrustRegionBOConfig,
    make_config,
    make_optimiser,
)
from agent.optimise.baselines import peak
from benchmarks.alignment_harness import SyntheticAlignment, metrics, run

COORDS = [{"name": n, "low": 0.0, "high": 10.0} for n in ("a", "b", "c")]
START = {"a": 3.0, "b": 7.0, "c": 4.0}
OPT = np.array([5.0, 5.5, 4.5])


def bowl(p):
    x = np.array([p[n] for n in ("a", "b", "c")])
    y = float(np.exp(-np.sum((x - OPT) ** 2) / 8))
    return y, (0.005 * y) ** 2


@pytest.mark.parametrize("cls,over", [(NelderMeadConfig, {}), (RandomSearchConfig, {}),
                                      (SequentialScanConfig, {"points_per_scan": 7}),
                                      (TrustRegionBOConfig, {"n_initial": 4})])
def test_baselines_improve_a_simple_problem(cls, over):
    opt = make_optimiser(make_config(cls, {"coordinates": COORDS, "value": "value",
                                           "start": START, "max_evaluations": 60, **over}))
    rec = run(opt, bowl, lambda p: bowl(p)[0], 60, start=START)
    opt.close()
    assert max(rec.truth) > bowl(START)[0] * 1.5
    if cls is not RandomSearchConfig:
        assert max(rec.truth) > 0.9


def test_peak_statistics():
    x = np.linspace(-1, 1, 21)
    y = np.exp(-(x - 0.3) ** 2 / 0.02)
    assert peak(x, y, "max", 0.0) == pytest.approx(0.3)
    assert peak(x, y, "cen", 0.0) == pytest.approx(0.3, abs=0.02)
    assert peak(x, y, "com", 0.0) == pytest.approx(0.3, abs=0.02)
    assert peak(x, np.zeros_like(x), "com", 0.7) == 0.7


def test_nelder_mead_close_stops_its_thread():
    opt = make_optimiser(make_config(NelderMeadConfig, {"coordinates": COORDS, "value": "value",
                                                        "start": START, "max_evaluations": 9}))
    run(opt, bowl, lambda p: bowl(p)[0], 5, start=START)
    opt.close()
    assert not opt._thread.is_alive()


def test_trust_region_bo_beats_random_on_the_synthetic_problem():
    prob = SyntheticAlignment(seed=1)
    start = prob.misaligned_start(0.1, np.random.default_rng(1))
    got = {}
    for cls in (TrustRegionBOConfig, RandomSearchConfig):
        opt = make_optimiser(make_config(cls, {"coordinates": prob.coordinates,
                                               "value": "value", "start": start,
                                               "max_evaluations": 40, "seed": 1}))
        rec = run(opt, prob.measure, prob.objective, 40, start=start)
        got[cls.__name__] = metrics(rec, prob.j_star, start, prob.spans, budgets=(40,))
    assert got["TrustRegionBOConfig"]["best"][40] > 2 * got["RandomSearchConfig"]["best"][40]
