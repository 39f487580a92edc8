"""ophyd-async beam camera: an areaDetector driver with an NDStats plugin, one frame a trigger.

PVs (areaDetector names, prefix ``$(P)`` from the config, e.g. ``BL:CAM1:``):
driver ``cam1:Acquire`` (put completes when the frame is done), ``cam1:AcquireTime``,
``cam1:DetectorState_RBV``, ``cam1:ArrayCounter_RBV``, ``cam1:ArraySizeX_RBV``/``Y``;
image ``image1:ArrayData``; NDStats ``Stats1:Total_RBV``, ``MaxValue_RBV``,
``MeanValue_RBV``, ``CentroidX_RBV``, ``CentroidY_RBV``, ``SigmaX_RBV``, ``SigmaY_RBV``,
``SigmaXY_RBV``, ``CentroidThreshold``, ``ArrayCounter_RBV``. ophyd-async 0.21's
``NDStatsIO`` has ``total`` only (FIELD_NOTES), so the other statistics are declared here.

Freshness: ``trigger`` returns only once ``Stats1:ArrayCounter_RBV`` has passed the value it
had before the frame, and the stats are read uncached after that, so a reading never holds
the previous frame's stats (FIELD_NOTES "stale reads"; the scaler's NACQ does the same).
"""

from __future__ import annotations

import asyncio

import numpy as np
from ophyd_async.core import (
    DEFAULT_TIMEOUT,
    Array1D,
    AsyncStatus,
    DeviceMock,
    StandardReadable,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.epics.adcore import ADState
from ophyd_async.epics.core import epics_signal_r, epics_signal_rw, epics_signal_rw_rbv

from devices.errors import DeviceError

COUNTER_POLL_S = 0.002  # re-read period while the stats counter has not yet moved

#: NDStats readings: (attribute, PV suffix, units). Centroids and sigmas are in pixels.
STATS_FIELDS = (
    ("total", "Total_RBV", "counts"),
    ("max_value", "MaxValue_RBV", "counts"),
    ("mean_value", "MeanValue_RBV", "counts"),
    ("centroid_x", "CentroidX_RBV", "px"),
    ("centroid_y", "CentroidY_RBV", "px"),
    ("sigma_x", "SigmaX_RBV", "px"),
    ("sigma_y", "SigmaY_RBV", "px"),
    ("sigma_xy", "SigmaXY_RBV", ""),
)


class CameraTimeoutError(TimeoutError, DeviceError):
    """The stats plugin's frame counter did not move after a frame."""


class BeamCameraMock(DeviceMock["BeamCamera"]):
    """Mock behaviour: an Acquire put completes a frame at once (both counters + 1)."""

    async def connect(self, device: BeamCamera) -> None:
        async def _frame(value: bool) -> bool:
            if value:
                for counter in (device.array_counter, device.stats_array_counter):
                    set_mock_value(counter, await counter.get_value() + 1)
            return False

        callback_on_mock_put(device.acquire, _frame)


@default_mock_class(BeamCameraMock)
class BeamCamera(StandardReadable):
    """areaDetector camera with NDStats: ``trigger`` takes one frame, ``read`` gives its stats.

    Args:
        prefix: areaDetector ``$(P)``, e.g. ``"BL:CAM1:"``.
        name: device name; readings are ``<name>_total``, ``<name>_centroid_x`` ...
        read_image: also read ``image1:ArrayData`` (a 1-D array of size_x * size_y counts,
            row-major, ``image.reshape(size_y, size_x)``) into each event.
        frame_timeout_s: how long after Acquire completes the stats counter may take to move.

    Exposure: ``acquire_time`` (``cam1:AcquireTime``, s). Configuration: acquire time, array
    sizes, centroid threshold.
    """

    def __init__(self, prefix: str, name: str = "", read_image: bool = False,
                 frame_timeout_s: float = DEFAULT_TIMEOUT) -> None:
        cam, stats = prefix + "cam1:", prefix + "Stats1:"
        self._frame_timeout_s = frame_timeout_s
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.acquire_time = epics_signal_rw_rbv(float, cam + "AcquireTime")
            self.array_size_x = epics_signal_r(int, cam + "ArraySizeX_RBV")
            self.array_size_y = epics_signal_r(int, cam + "ArraySizeY_RBV")
            self.centroid_threshold = epics_signal_rw(float, stats + "CentroidThreshold")
        self.acquire = epics_signal_rw(bool, cam + "Acquire")
        self.detector_state = epics_signal_r(ADState, cam + "DetectorState_RBV")
        self.array_counter = epics_signal_r(int, cam + "ArrayCounter_RBV")
        self.stats_array_counter = epics_signal_r(int, stats + "ArrayCounter_RBV")
        for attr, suffix, _units in STATS_FIELDS:
            fmt = Format.HINTED_UNCACHED_SIGNAL if attr == "total" else Format.UNCACHED_SIGNAL
            with self.add_children_as_readables(fmt):
                setattr(self, attr, epics_signal_r(float, stats + suffix))
        self.image = epics_signal_r(Array1D[np.int16], prefix + "image1:ArrayData")
        if read_image:
            self.add_readables([self.image], Format.UNCACHED_SIGNAL)
        super().__init__(name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator="_")  # beam_camera_total, as classic

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Acquire one frame; done once the stats plugin has processed it.

        Raises CameraTimeoutError if ``Stats1:ArrayCounter_RBV`` does not pass its value
        from before the frame within ``frame_timeout_s`` after Acquire completed.
        """
        before, exposure_s = await asyncio.gather(
            self.stats_array_counter.get_value(cached=False), self.acquire_time.get_value())
        await self.acquire.set(True, timeout=exposure_s + DEFAULT_TIMEOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._frame_timeout_s
        while await self.stats_array_counter.get_value(cached=False) <= before:
            if loop.time() > deadline:
                raise CameraTimeoutError(
                    f"{self.name}: {self.stats_array_counter.source} stayed at {before} for "
                    f"{self._frame_timeout_s} s after the frame")
            await asyncio.sleep(COUNTER_POLL_S)

    async def frame(self) -> np.ndarray:
        """The last image as a (size_y, size_x) array of counts."""
        data, nx, ny = await asyncio.gather(self.image.get_value(cached=False),
                                            self.array_size_x.get_value(),
                                            self.array_size_y.get_value())
        return np.asarray(data)[: nx * ny].reshape(ny, nx)
