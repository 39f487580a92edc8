"""Classic ophyd beam camera: the areaDetector driver and NDStats PVs that alignment uses.

A plain ``ophyd.Device`` with the same PV names as :class:`devices.camera.BeamCamera` (a stock
``ophyd.areadetector`` ``SimDetector`` with a ``StatsPlugin`` would need about 90 PVs with
exact enum sets, OPTICS.md). ``trigger`` puts ``cam1:Acquire`` = 1, and the status finishes
once ``Stats1:ArrayCounter_RBV`` has moved past its value from before the frame, so a read
never returns the previous frame's stats. Readings: ``<name>_total``, ``<name>_max_value``,
``<name>_centroid_x`` ... (counts; centroids and sigmas in pixels).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import DeviceStatus

from devices.errors import DeviceError

COUNTER_POLL_S = 0.002


def _stats(suffix: str, kind: Kind) -> Cpt:
    return Cpt(EpicsSignalRO, "Stats1:" + suffix, kind=kind, auto_monitor=False)


class ClassicBeamCamera(Device):
    """Classic ophyd camera with NDStats (see module doc). Exposure: ``acquire_time`` (s)."""

    acquire = Cpt(EpicsSignal, "cam1:Acquire", kind=Kind.omitted, put_complete=True)
    acquire_time = Cpt(EpicsSignal, "cam1:AcquireTime_RBV", write_pv="cam1:AcquireTime",
                       kind=Kind.config)
    detector_state = Cpt(EpicsSignalRO, "cam1:DetectorState_RBV", string=True,
                         kind=Kind.omitted)
    array_counter = Cpt(EpicsSignalRO, "cam1:ArrayCounter_RBV", kind=Kind.omitted)
    array_size_x = Cpt(EpicsSignalRO, "cam1:ArraySizeX_RBV", kind=Kind.config)
    array_size_y = Cpt(EpicsSignalRO, "cam1:ArraySizeY_RBV", kind=Kind.config)
    centroid_threshold = Cpt(EpicsSignal, "Stats1:CentroidThreshold", kind=Kind.config)
    stats_array_counter = _stats("ArrayCounter_RBV", Kind.omitted)
    image = Cpt(EpicsSignalRO, "image1:ArrayData", kind=Kind.omitted, auto_monitor=False)
    total = _stats("Total_RBV", Kind.hinted)
    max_value = _stats("MaxValue_RBV", Kind.normal)
    mean_value = _stats("MeanValue_RBV", Kind.normal)
    centroid_x = _stats("CentroidX_RBV", Kind.normal)
    centroid_y = _stats("CentroidY_RBV", Kind.normal)
    sigma_x = _stats("SigmaX_RBV", Kind.normal)
    sigma_y = _stats("SigmaY_RBV", Kind.normal)
    sigma_xy = _stats("SigmaXY_RBV", Kind.normal)

    def __init__(self, prefix: str = "", *, name: str, frame_timeout_s: float = 10.0, **kw):
        """``prefix``: areaDetector ``$(P)``, e.g. ``"BL:CAM1:"`` (fields as in
        :data:`devices.camera.STATS_FIELDS`)."""
        super().__init__(prefix, name=name, **kw)
        self.frame_timeout_s = frame_timeout_s

    def trigger(self) -> DeviceStatus:
        """Acquire one frame; the status finishes when NDStats has processed it."""
        before = self.stats_array_counter.get()
        status = DeviceStatus(self, timeout=self.acquire_time.get() + self.frame_timeout_s + 10)
        put = self.acquire.set(1)

        def wait_for_stats() -> None:
            try:
                put.wait(timeout=self.acquire_time.get() + self.frame_timeout_s)
                deadline = time.monotonic() + self.frame_timeout_s
                while self.stats_array_counter.get() <= before:
                    if time.monotonic() > deadline:
                        raise DeviceError(
                            f"{self.name}: {self.stats_array_counter.pvname} stayed at "
                            f"{before} for {self.frame_timeout_s} s after the frame")
                    time.sleep(COUNTER_POLL_S)
            except Exception as exc:  # any failure, CA timeouts included, fails the status
                status.set_exception(exc)
            else:
                status.set_finished()

        threading.Thread(target=wait_for_stats, daemon=True).start()
        return status

    def frame(self) -> np.ndarray:
        """The last image as a (size_y, size_x) array of counts."""
        nx, ny = int(self.array_size_x.get()), int(self.array_size_y.get())
        return np.asarray(self.image.get())[: nx * ny].reshape(ny, nx)
