"""An areaDetector camera as a caproto PVGroup: the driver, image and NDStats PVs alignment uses.

Names follow areaDetector (ADCore ``ADBase.template``, ``NDStdArrays.template``,
``NDStats.template``) with the default plugin prefixes ``cam1:``, ``image1:``, ``Stats1:``.
One frame, as a real driver and plugin chain run it: ``cam1:Acquire`` = 1 sets
``DetectorState_RBV`` to Acquire, the exposure runs ``AcquireTime`` seconds, the frame is
rendered, ``image1:ArrayData`` and ``cam1:ArrayCounter_RBV`` are posted, NDStats computes
its statistics from that image and posts them, then ``Stats1:ArrayCounter_RBV``; the state
returns to Idle, Acquire to Done, and only then does the Acquire put complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from configs.schema import CameraConfig

#: ADBase DetectorState_RBV choices (ADDriver.h ADStatus_t)
DETECTOR_STATES = ("Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error",
                   "Waiting", "Initializing", "Disconnected", "Aborted")

FrameFunction = Callable[[float], np.ndarray]  # exposure s -> (size_y, size_x) counts
StatsFunction = Callable[[np.ndarray, float], dict[str, float]]  # image, threshold -> stats


def _stat(suffix: str, doc: str, units: str = "") -> pvproperty:
    return pvproperty(name=suffix, value=0.0, read_only=True, units=units, doc=doc)


class DriverGroup(PVGroup):
    """``cam1:``: the detector driver (ADBase)."""

    acquire = pvproperty(name="Acquire", value="Done", dtype=ChannelType.ENUM,
                         enum_strings=("Done", "Acquire"),
                         doc="Acquire: 1 takes one frame; the put completes when it is done")
    acquire_rbv = pvproperty(name="Acquire_RBV", value="Done", dtype=ChannelType.ENUM,
                             enum_strings=("Done", "Acquire"), read_only=True,
                             doc="Acquire readback")
    acquire_time = pvproperty(name="AcquireTime", value=0.01, units="s",
                              doc="Exposure time (AcquireTime), s; > 0")
    acquire_time_rbv = pvproperty(name="AcquireTime_RBV", value=0.01, units="s",
                                  read_only=True, doc="Exposure time readback, s")
    detector_state = pvproperty(name="DetectorState_RBV", value="Idle",
                                dtype=ChannelType.ENUM, enum_strings=DETECTOR_STATES,
                                read_only=True, doc="Detector state (ADStatus)")
    array_counter = pvproperty(name="ArrayCounter", value=0, doc="Frame counter (writable)")
    array_counter_rbv = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True,
                                   doc="Frames acquired since the counter was reset")
    size_x = pvproperty(name="ArraySizeX_RBV", value=0, read_only=True, units="px",
                        doc="Image width, pixels")
    size_y = pvproperty(name="ArraySizeY_RBV", value=0, read_only=True, units="px",
                        doc="Image height, pixels")

    @acquire_time.putter
    async def acquire_time(self, instance, value):
        if not value > 0:
            raise ValueError(f"{self.prefix}AcquireTime={value} s: must be > 0 s")
        await self.acquire_time_rbv.write(value)
        return value

    @array_counter.putter
    async def array_counter(self, instance, value):
        await self.array_counter_rbv.write(value)
        return value

    @acquire.putter
    async def acquire(self, instance, value):
        if value not in ("Acquire", 1):
            return "Done"
        await self.parent.take_frame()
        return "Done"


def image_group(length: int) -> type[PVGroup]:
    """``image1:``: the NDStdArrays plugin (the frame as an int16 waveform of ``length``)."""
    return type(PVGroup)(f"ImageGroup{length}", (PVGroup,), {
        "array_data": pvproperty(name="ArrayData", value=[0] * length, dtype=ChannelType.INT,
                                 max_length=length, read_only=True,
                                 doc="Last image, row-major, counts"),
        "array_counter_rbv": pvproperty(name="ArrayCounter_RBV", value=0, read_only=True,
                                        doc="Frames received by the plugin"),
    })


class StatsGroup(PVGroup):
    """``Stats1:``: NDStats, computed from each frame (see :func:`sim.optics.camera`)."""

    total = _stat("Total_RBV", "Sum of all pixel values", "counts")
    max_value = _stat("MaxValue_RBV", "Largest pixel value", "counts")
    min_value = _stat("MinValue_RBV", "Smallest pixel value", "counts")
    mean_value = _stat("MeanValue_RBV", "Mean pixel value", "counts")
    centroid_x = _stat("CentroidX_RBV", "Value-weighted x centroid of pixels >= threshold",
                       "px")
    centroid_y = _stat("CentroidY_RBV", "Value-weighted y centroid of pixels >= threshold",
                       "px")
    sigma_x = _stat("SigmaX_RBV", "sqrt(mu20/M00) of pixels >= threshold", "px")
    sigma_y = _stat("SigmaY_RBV", "sqrt(mu02/M00) of pixels >= threshold", "px")
    sigma_xy = _stat("SigmaXY_RBV", "mu11/(M00 SigmaX SigmaY): normalised correlation")
    centroid_threshold = pvproperty(name="CentroidThreshold", value=0.0, units="counts",
                                    doc="Pixels below this are left out of the centroid")
    array_counter_rbv = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True,
                                   doc="Frames processed; posted after every statistic")


class CameraRecord(PVGroup):
    """One camera ``prefix`` (e.g. ``BL:CAM1:``), rendering frames with ``frame_fn`` and
    computing NDStats with ``stats_fn``. Build it with :func:`make_camera_record`, which
    sizes the image waveform from the config."""

    cam = SubGroup(DriverGroup, prefix="cam1:")
    image = SubGroup(image_group(1), prefix="image1:")
    stats = SubGroup(StatsGroup, prefix="Stats1:")

    def __init__(self, prefix: str, config: CameraConfig, frame_fn: FrameFunction,
                 stats_fn: StatsFunction, **kwargs):
        super().__init__(prefix, **kwargs)
        self.config, self.frame_fn, self.stats_fn = config, frame_fn, stats_fn
        self._lock = asyncio.Lock()

    async def initialise(self) -> None:
        """Write the sizes and the default exposure from config."""
        await self.cam.size_x.write(self.config.size_x)
        await self.cam.size_y.write(self.config.size_y)
        await self.cam.acquire_time.write(self.config.default_exposure_s)
        await self.image.array_data.write(np.zeros(self.config.array_length, np.int16))

    async def take_frame(self) -> None:
        """One exposure through the driver, the image plugin and NDStats (module doc)."""
        async with self._lock:  # a second Acquire waits for the first frame
            cam = self.cam
            await cam.acquire_rbv.write("Acquire")
            await cam.detector_state.write("Acquire")
            exposure_s = cam.acquire_time.value
            await asyncio.sleep(exposure_s)
            frame = self.frame_fn(exposure_s)
            await self.image.array_data.write(frame.ravel().astype(np.int16))
            await cam.array_counter_rbv.write(cam.array_counter_rbv.value + 1)
            await self.image.array_counter_rbv.write(cam.array_counter_rbv.value)
            await self._post_stats(frame)
            await cam.detector_state.write("Idle")
            await cam.acquire_rbv.write("Done")

    async def _post_stats(self, frame: np.ndarray) -> None:
        stats = self.stats_fn(frame, self.stats.centroid_threshold.value)
        for name, value in stats.items():
            if np.isfinite(value):  # no pixel above threshold: NDStats keeps the old values
                await getattr(self.stats, name).write(float(value))
        await self.stats.array_counter_rbv.write(self.stats.array_counter_rbv.value + 1)


def make_camera_record(prefix: str, config: CameraConfig, frame_fn: FrameFunction,
                       stats_fn: StatsFunction) -> CameraRecord:
    """A :class:`CameraRecord` whose ``image1:ArrayData`` holds size_x * size_y elements."""
    sized = type(PVGroup)("SizedCameraRecord", (CameraRecord,), {
        "image": SubGroup(image_group(config.array_length), prefix="image1:")})
    return sized(prefix, config, frame_fn, stats_fn)


def record_type(channel) -> str:
    """The EPICS record type a served PV stands for (``dbl``-style): ``ai``/``ao``,
    ``longin``/``longout``, ``bi``/``bo``/``mbbi``, ``waveform``."""
    if channel.max_length > 1:
        return "waveform"
    out = not channel.pvspec.read_only
    if channel.data_type == ChannelType.ENUM:
        return ("bo" if len(channel.enum_strings) == 2 else "mbbo") if out else \
            ("bi" if len(channel.enum_strings) == 2 else "mbbi")
    if channel.data_type == ChannelType.DOUBLE:
        return "ao" if out else "ai"
    return "longout" if out else "longin"


def camera_records(camera: CameraRecord) -> list[tuple[str, str]]:
    """(PV name, record type) of every PV of ``camera``."""
    return sorted((name, record_type(channel)) for name, channel in camera.pvdb.items())
