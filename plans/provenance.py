"""Decision provenance: each proposal becomes an event in its own stream of the same run.

A reader of the run can then reconstruct why each point was measured: which proposal it came
from, the acquisition function and its value there, the GP hyperparameters in force, and
how many measurements the decision was based on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from agent.messages import Proposal

STREAM = "proposals"


class ProposalRecorder:
    """A bluesky ``Readable`` whose reading is one point of the latest proposal.

    Fields (``<name>`` is this object's name): ``<name>_id``, ``<name>_<coordinate>`` for each
    coordinate (engineering units), ``<name>_acquisition_function``,
    ``<name>_acquisition_value``, ``<name>_hyperparameters`` (1-D, length varies with the
    kernel; empty during the initial design), ``<name>_n_measurements``,
    ``<name>_decision_time_s`` (the agent's compute time), ``<name>_wait_s`` (how long the plan
    was blocked waiting for it), ``<name>_phase``.
    """

    def __init__(self, coordinates: Sequence[str], units: Sequence[str], name: str = "proposal"):
        self.name = name
        self.parent = None
        self._coordinates = list(coordinates)
        self._units = list(units)
        self._reading: dict = {}

    def record(self, proposal: Proposal, wait_s: float = 0.0, index: int = 0) -> None:
        """Hold point ``index`` of ``proposal`` for the next ``read``.

        ``wait_s``: how long the plan was blocked waiting for this proposal, s.
        """
        point = proposal.points[index]
        values = {
            "id": proposal.proposal_id,
            "acquisition_function": proposal.acquisition_function,
            "acquisition_value": proposal.acquisition_values[index],
            "hyperparameters": list(proposal.hyperparameters),
            "n_measurements": proposal.n_measurements,
            "decision_time_s": proposal.decision_time_s,
            "wait_s": wait_s,
            "phase": proposal.phase,
        }
        values.update({c: point[c] for c in self._coordinates})
        now = time.time()
        self._reading = {
            f"{self.name}_{k}": {"value": v, "timestamp": now} for k, v in values.items()
        }

    @property
    def hints(self) -> dict:
        """No hinted fields: BestEffortCallback draws no live plots for this stream (the
        decision record is for reading back, not for watching)."""
        return {"fields": []}

    def read(self) -> dict:
        if not self._reading:
            raise RuntimeError(f"{self.name}: read before any proposal was recorded")
        return dict(self._reading)

    def describe(self) -> dict:
        source = "beamagent:agent"
        keys = {
            "id": {"dtype": "integer", "shape": []},
            "acquisition_function": {"dtype": "string", "shape": []},
            "acquisition_value": {"dtype": "number", "shape": []},
            "hyperparameters": {"dtype": "array", "shape": [None], "dtype_numpy": "<f8"},
            "n_measurements": {"dtype": "integer", "shape": []},
            "decision_time_s": {"dtype": "number", "shape": [], "units": "s"},
            "wait_s": {"dtype": "number", "shape": [], "units": "s"},
            "phase": {"dtype": "string", "shape": []},
        }
        for coordinate, unit in zip(self._coordinates, self._units, strict=True):
            keys[coordinate] = {"dtype": "number", "shape": [], "units": unit}
        return {f"{self.name}_{k}": {"source": source, **v} for k, v in keys.items()}
