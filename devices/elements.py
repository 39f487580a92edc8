"""ophyd-async element groups: the motor records that move one element of the beamline.

Each group has one child per motor *role* (``dcm.pitch``, ``vkb.bender``); each motor keeps
its config name as its device name, which is also its event field (``dcm_pitch``). The roles
an element has come from the YAML (``configs.schema.MotorGroupConfig.ROLES`` lists those of
each kind), so a two-actuator bender is ``vkb.bender_us`` / ``vkb.bender_ds``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ophyd_async.core import Device
from ophyd_async.epics.motor import Motor

from devices.motor import KeepChildNames


class MotorGroup(KeepChildNames, Device):
    """Motors of one element, as children named by role.

    Args:
        motors: ``{role: motor}``, e.g. ``{"pitch": Motor(...), "roll": Motor(...)}``.
        name: the element's name (children keep their own names).
    """

    def __init__(self, motors: Mapping[str, Motor], name: str = "") -> None:
        for role, motor in motors.items():
            setattr(self, role, motor)
        self.roles = tuple(motors)
        super().__init__(name)

    @property
    def motors(self) -> dict[str, Motor]:
        """``{role: motor}`` in config order."""
        return {role: getattr(self, role) for role in self.roles}


class SampleStage(MotorGroup):
    """Sample stage: ``x``, ``y`` (and ``z``), in mm."""


class Dcm(MotorGroup):
    """Double-crystal monochromator, second crystal: ``pitch`` and ``roll`` (urad)."""


class Slits(MotorGroup):
    """One plane of a slit pair served as soft motors (synApps 2slit): ``center``, ``gap``."""


class KBMirror(MotorGroup):
    """Kirkpatrick-Baez mirror: ``pitch`` (urad), ``bender`` or ``bender_us``/``bender_ds``
    (% of focal power), ``height`` (um), ``roll`` (urad)."""


GROUP_CLASSES: dict[str, type[MotorGroup]] = {
    "stage": SampleStage, "dcm": Dcm, "slits": Slits, "kb_mirror": KBMirror,
}
