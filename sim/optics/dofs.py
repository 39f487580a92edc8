"""The optics degrees of freedom: ONE table of keys, units and motor ranges.

Keys are ``"element.role"``. Ranges are in motor (user) coordinates; the hidden aligned
geometry sits at :attr:`sim.optics.params.OpticsParams.offsets`, inside each range.
The ranges were chosen so that, around the optimum, the 1-D FWHM of the objective is about
7-12 % of the range for benders and heights and 40-90 % for pitches (OPTICS.md); the
measured values are in ``benchmarks/results/optics_model.json``.

Only defaults read this table: the model and the scoring take bounds as arguments, so the
beamline YAML can become the source of the ranges later.
"""

from __future__ import annotations

from typing import NamedTuple


class DofSpec(NamedTuple):
    key: str
    egu: str
    low: float
    high: float
    description: str  # <= 40 characters


DOF_TABLE: tuple[DofSpec, ...] = (
    DofSpec("dcm.pitch", "urad", -25.0, 35.0, "DCM 2nd crystal pitch (detune)"),
    DofSpec("dcm.roll", "urad", -400.0, 400.0, "DCM 2nd crystal roll"),
    DofSpec("ssa.center", "um", -400.0, 400.0, "SSA horizontal centre"),
    DofSpec("ssa.gap", "um", 10.0, 100.0, "SSA horizontal gap"),
    DofSpec("vkb.pitch", "urad", -25.0, 25.0, "VKB pitch (offset from 3 mrad)"),
    DofSpec("vkb.bender", "%", 0.0, 100.0, "VKB bender (focal power)"),
    DofSpec("vkb.bender_us", "%", 0.0, 100.0, "VKB bender, upstream actuator"),
    DofSpec("vkb.bender_ds", "%", 0.0, 100.0, "VKB bender, downstream actuator"),
    DofSpec("vkb.height", "um", -600.0, 600.0, "VKB height"),
    DofSpec("vkb.roll", "urad", -20000.0, 20000.0, "VKB roll"),
    DofSpec("hkb.pitch", "urad", -40.0, 40.0, "HKB pitch (offset from 3 mrad)"),
    DofSpec("hkb.bender", "%", 0.0, 100.0, "HKB bender (focal power)"),
    DofSpec("hkb.height", "um", -700.0, 700.0, "HKB height"),
)

_BY_KEY = {d.key: d for d in DOF_TABLE}
_EASY_ONLY = {"vkb.bender"}
_HARD_ONLY = {"vkb.bender_us", "vkb.bender_ds"}


def dof_keys(hard: bool = False) -> tuple[str, ...]:
    """The DOF keys in model order: 11 for the standard variant, 12 for the hard one."""
    skip = _EASY_ONLY if hard else _HARD_ONLY
    return tuple(d.key for d in DOF_TABLE if d.key not in skip)


def default_bounds(hard: bool = False) -> dict[str, tuple[float, float]]:
    """``{key: (low, high)}`` from :data:`DOF_TABLE` for the variant's DOFs."""
    return {k: (_BY_KEY[k].low, _BY_KEY[k].high) for k in dof_keys(hard)}


def dof_spec(key: str) -> DofSpec:
    """The table row of ``key`` (KeyError names the known keys)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown optics DOF {key!r}; known: {sorted(_BY_KEY)}") from None
