"""Autosave for the simulated IOC, as EPICS autosave does for a real one.

With ``simulation.autosave`` configured (or ``beamagent sim --autosave PATH``), the simulator
saves each motor's position and settings (OFF, DIR, dial limits, VELO, ACCL) and the scaler's
preset time TP to a JSON file every ``period_s`` and on a clean shutdown, and restores them when
it starts again. The mechanical position is restored too: the stage did not move while its IOC
was down, so the hidden physics sees the sample where it was.

The file is written atomically (a temporary file in the same directory, fsynced, then
renamed over the old one), so a kill mid-write leaves the previous save intact. On start, a
missing file means a first start (the config's values); a corrupt or invalid one is logged
and ignored, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotorState(_Strict):
    """One motor record: mechanical motor and load positions (egu), the dial shift of a frozen
    SET, OFF, DIR, dial soft limits, VELO and ACCL."""

    motor: Finite
    load: Finite
    shift: Finite = 0.0
    off: Finite = 0.0
    dir: Literal["Pos", "Neg"] = "Pos"
    dllm: Finite
    dhlm: Finite
    velo: Annotated[Finite, Field(gt=0)]
    accl: Annotated[Finite, Field(ge=0)]

    @model_validator(mode="after")
    def _limits_ordered(self) -> MotorState:
        if self.dllm > self.dhlm:
            raise ValueError(f"dllm {self.dllm} above dhlm {self.dhlm}")
        return self


class ScalerState(_Strict):
    tp: Annotated[Finite, Field(gt=0, description="preset time TP, s")]


class AutosaveState(_Strict):
    """The whole autosave file."""

    version: Literal[1] = 1
    saved_at: Finite = Field(default_factory=time.time, description="unix time, s")
    motors: dict[str, MotorState] = Field(default_factory=dict)
    scaler: ScalerState | None = None


class Autosave:
    """Reads and atomically writes one autosave file."""

    def __init__(self, path: str | Path, period_s: float = 1.0):
        self.path = Path(path)
        self.period_s = period_s
        self._last_saved: dict | None = None

    def load(self) -> AutosaveState | None:
        """The saved state, or None if there is none (missing) or it is unusable (logged)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            logger.info("no autosave file %s yet: starting from the config", self.path)
            return None
        except OSError as exc:
            logger.warning("autosave file %s not readable, ignored: %s", self.path, exc)
            return None
        try:
            state = AutosaveState.model_validate(json.loads(text))
        except (ValueError, RecursionError) as exc:  # JSON or validation (a ValueError)
            reason = (f"{len(exc.errors())} invalid fields, first: {exc.errors()[0]['loc']}: "
                      f"{exc.errors()[0]['msg']}" if isinstance(exc, ValidationError)
                      else f"{type(exc).__name__}: {str(exc)[:200]}")
            logger.warning("autosave file %s is corrupt, ignored (starting from the config): "
                           "%s", self.path, reason)
            return None
        self._last_saved = state.model_dump(exclude={"saved_at"})
        return state

    def save(self, state: AutosaveState) -> bool:
        """Write ``state`` atomically unless it is what was saved last. True if written."""
        content = state.model_dump(exclude={"saved_at"})
        if content == self._last_saved:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(state.model_dump_json(indent=1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("autosave to %s failed (the previous save stays): %s", self.path, exc)
            tmp.unlink(missing_ok=True)
            return False
        self._last_saved = content
        return True
