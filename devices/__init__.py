"""Devices of the (simulated) beamline, in two flavours built from one YAML config.

ophyd-async (main flavour)::

    from bluesky import RunEngine
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    from ophyd_async.plan_stubs import ensure_connected
    from devices import load_beamline_config, make_beamline

    RE = RunEngine()                         # create the RunEngine *before* connecting
    bl = make_beamline(load_beamline_config())
    RE(ensure_connected(bl))                 # PVConnectError names missing PVs + timeout
    RE(bps.mv(bl.scaler.preset_time, 0.01))  # exposure, s
    RE(bp.grid_scan([bl.scaler], bl.sample_stage.x, -5, 5, 11, bl.sample_stage.y, -5, 5, 11))

Classic ophyd (caproto control layer)::

    from devices import make_ophyd_beamline
    obl = make_ophyd_beamline(load_beamline_config())   # connects, waits (timeout_s=10)
    RE(bp.grid_scan([obl.scaler], obl.sample_stage.x, -5, 5, 11, obl.sample_stage.y, -5, 5, 11))

Pause scans while the beam is lost (either flavour)::

    from devices.suspenders import suspend_on_beam_loss
    RE.install_suspender(suspend_on_beam_loss(bl.ring_current, floor_mA=100, sleep_s=5))

Both beamlines are built from ``beamline.elements`` and have the same attributes: one per
element by its config name (``sample_stage.x/.y``, ``mono_energy``, ``dcm.pitch``,
``ssa.gap``, ``vkb.bender``, ``hkb.height``, ``beam_camera``, ``scaler``), ``ring_current``,
``shutter``, ``motors`` (by motor name) and ``motor(name)``; and the same event fields:

=================  ===================================================  ==========
field              what                                                 units
=================  ===================================================  ==========
``sample_x/_y``    sample stage motor readbacks (RBV)                   mm
``mono_energy``    monochromator energy readback                        eV
``clock``          scaler channel 1 (reference clock counts)            counts
``i0``             scaler channel 2, incident flux monitor              counts
``det``            scaler channel 3, fluorescence detector              counts
``ring_current``   storage-ring current                                 mA
``shutter_status`` ``"OPEN"`` / ``"CLOSED"``                            --
``dcm_pitch`` ...  optics motor readbacks, by motor name                urad, um, %
``beam_camera_*``  NDStats of each frame: ``total``, ``max_value``,     counts, px
                   ``mean_value``, ``centroid_x/_y``, ``sigma_x/_y``,
                   ``sigma_xy``
=================  ===================================================  ==========

Classic ophyd adds its usual extras to events (``sample_x_user_setpoint``, ``scaler_time``);
ophyd-async puts motor configuration in ``<motor>-velocity`` etc. (configuration only).
Exposure is ``scaler.preset_time`` (TP, s) in both flavours.

Behaviour added on top of the stock classes (both flavours):

* moves are verified: ``set`` fails with :class:`MoveError` unless |RBV - target| <=
  the motor's configured tolerance; limit violations raise :class:`LimitError`
  ("move of sample_x to 12.0 mm outside limits [-10.0, 10.0] mm") before moving;
* ophyd-async puts rejected by the IOC (or cut by a disconnect) raise :class:`PutError`
  (see :mod:`devices.ca_put` for the upstream bug this works around);
* scaler ``trigger`` waits for ``:NACQ`` to increment, and camera ``trigger`` for
  ``Stats1:ArrayCounter_RBV``, so reads are never stale;
* :func:`devices.suspenders.suspend_on_beam_loss` pauses scans when the beam is lost;
* :class:`devices.connection.ConnectionWatch` tells whether a device lost Channel Access
  (and is back), for either flavour; ``plans.reconnect`` uses it to carry ``gp_scan``
  through an IOC restart. A classic motor's move whose IOC disconnects fails at once.

Nothing connects, patches or starts threads at import time.
"""

from configs.schema import BeamlineConfig, load_beamline_config
from devices.errors import (
    DeviceConnectError,
    DeviceError,
    LimitError,
    MoveError,
    PutError,
    ShutterError,
)

__all__ = [
    "BeamlineConfig",
    "DeviceConnectError",
    "DeviceError",
    "LimitError",
    "MoveError",
    "PutError",
    "ShutterError",
    "disconnect_channel_access",
    "load_beamline_config",
    "make_beamline",
    "make_ophyd_beamline",
]


def __getattr__(name: str):
    # Lazy: importing ``devices`` must not import ophyd-async or ophyd (or pick a CA layer).
    if name in ("make_beamline", "disconnect_channel_access"):
        from devices import factory

        return getattr(factory, name)
    if name == "make_ophyd_beamline":
        from devices.classic import make_ophyd_beamline

        return make_ophyd_beamline
    raise AttributeError(f"module 'devices' has no attribute {name!r}")
