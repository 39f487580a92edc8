"""In-process Gaussian-beam model of the alignment optics train (OPTICS.md).

- :mod:`sim.optics.dofs`: the DOF table (keys, units, ranges) and default bounds;
- :mod:`sim.optics.params`: pydantic parameters (layout, source, mirrors, camera, offsets);
- :mod:`sim.optics.beam`, :mod:`sim.optics.elements`: phase-space Gaussians and elements;
- :mod:`sim.optics.model`: :class:`OpticsModel` (beam at the camera, objective J);
- :mod:`sim.optics.camera`: frames and areaDetector NDStats from a beam;
- :mod:`sim.optics.scoring`: the truth for benchmarks (optimum, misaligned starts).

Pure numpy/scipy; nothing here imports caproto, ``agent``, ``plans`` or ``devices``.
"""

from sim.optics.dofs import DOF_TABLE, default_bounds, dof_keys
from sim.optics.model import BeamAtCamera, OpticsModel
from sim.optics.params import OpticsParams, hard_params

__all__ = ["DOF_TABLE", "BeamAtCamera", "OpticsModel", "OpticsParams", "default_bounds",
           "dof_keys", "hard_params"]
