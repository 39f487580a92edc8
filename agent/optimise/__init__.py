"""Optimisation for alignment: ask/tell optimisers with one face (tell, ask, release,
measurements, best, close), configured by pydantic models.

- :class:`TrustRegionBO` (agent.optimise.bayes): trust-region BO on a log-scale gpCAM GP;
- baselines: :class:`NelderMead`, :class:`RandomSearch`, :class:`SequentialScan`;
- :class:`AutonomousOptimiser`: optimise any Python function with them.
"""

from agent.optimise.baselines import NelderMead, RandomSearch, SequentialScan
from agent.optimise.bayes import TrustRegionBO
from agent.optimise.config import (
    NelderMeadConfig,
    Problem,
    RandomSearchConfig,
    SequentialScanConfig,
    TrustRegionBOConfig,
    make_config,
)

#: optimiser class by config class
OPTIMISERS = {TrustRegionBOConfig: TrustRegionBO, NelderMeadConfig: NelderMead,
              RandomSearchConfig: RandomSearch, SequentialScanConfig: SequentialScan}


def make_optimiser(config: Problem):
    """The optimiser for a validated config."""
    return OPTIMISERS[type(config)](config)


__all__ = ["NelderMead", "NelderMeadConfig", "OPTIMISERS", "Problem", "RandomSearch",
           "RandomSearchConfig", "SequentialScan", "SequentialScanConfig", "TrustRegionBO",
           "TrustRegionBOConfig", "make_config", "make_optimiser"]

from agent.optimise.experimenter import AutonomousOptimiser  # noqa: E402  (needs make_optimiser)

__all__ += ["AutonomousOptimiser"]
