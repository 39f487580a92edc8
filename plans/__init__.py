"""The plan library: autonomous bluesky plans that join the agent and the devices.

``gp_scan(detectors, motor1, (lo, hi), ..., agent=..., reducer=..., max_points=...)``.
"""

from plans.errors import MoveVerificationError, PlanArgumentError, PlanError
from plans.gp_scan import gp_scan

__all__ = ["MoveVerificationError", "PlanArgumentError", "PlanError", "gp_scan"]
