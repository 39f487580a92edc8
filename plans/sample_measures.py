"""The measures of a simulated sample's kind of map (issue 11), for the demo's summary.

Boundary maps (domains, phase boundaries): boundary localisation error (mm); sparse features
(particles): the fraction of particles found and false detections; see plans.scoring for the
definitions. Scored against the simulator's hidden sample: demo and benchmarks only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from plans.scoring import Truth, boundary_error_mm, features_found
from sim.samples import Domains, Particles, PhaseBoundary

#: a particle counts as found within this distance of its centre (as benchmarks/bench_map_kinds)
FEATURE_RADIUS_MM = 1.0


def map_kind(sample) -> str:
    """'boundary', 'sparse' or 'area' (RMSE only) for a simulated sample."""
    if isinstance(sample, Domains | PhaseBoundary):
        return "boundary"
    return "sparse" if isinstance(sample, Particles) else "area"


def kind_measures(sample, to_value: Callable[[np.ndarray], np.ndarray], truth: Truth,
                  z_map: np.ndarray) -> dict[str, float]:
    """The kind's measures of ``z_map`` (truth.z.shape, reduced values) for ``sample``.

    ``to_value`` maps the sample's signal to the expected reduced value (affine, as
    sim.physics makes det/i0). Returns {} for samples with RMSE as their only measure.
    """
    kind = map_kind(sample)
    if kind == "boundary":
        if isinstance(sample, Domains):
            lv = np.unique(sample.levels)
            levels = 0.5 * (lv[1:] + lv[:-1])
        else:  # the step sits on a gradient of 0.1 to 0.3: the middle of the jump is 0.5
            levels = np.array([0.5])
        pixel = float(truth.xs[1] - truth.xs[0])
        return {"boundary_error_mm": boundary_error_mm(truth.z, z_map, to_value(levels), pixel)}
    if kind == "sparse":
        zero = to_value(np.zeros(1))[0]
        heights = to_value(np.asarray(sample.heights)) - zero
        background = np.full(truth.z.shape, to_value(np.array([sample.background]))[0])
        found, false = features_found(z_map, truth.xs, truth.ys, sample.centres, heights,
                                      background, FEATURE_RADIUS_MM)
        return {"features_found": found, "false_detections": false}
    return {}
