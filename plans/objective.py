"""The alignment objective as a detector: a beam camera's NDStats reduced to flux density.

``FluxDensity(camera, ...)`` is a bluesky Readable/Triggerable around either camera flavour
(``devices.camera.BeamCamera`` or ``devices.classic_camera.ClassicBeamCamera``). ``trigger``
takes one frame; ``read`` gives the camera's fields plus

- ``<name>``: J in counts/s/um^2 (0.0 when the evaluation failed, so PeakStats and plots
  still work);
- ``<name>_variance``: its variance from counting statistics, (counts/s/um^2)^2;
- ``<name>_failure``: "" or why the frame is not a valid evaluation (beam off the camera,
  saturated, no spot).

so ``align``, ``rel_scan`` + ``PeakStats`` and a live plot all optimise the same field.

Reduction (the objective of ``sim.optics.model``, computed from what NDStats publishes)::

    N  = Total - dark_cps_per_pixel * t * n_pixels            signal counts
    R  = N / t                                                  counts/s
    Sx = SigmaX * pixel_um,  Sy = SigmaY * pixel_um             rms spot, um
    J  = R / (2 pi Sx Sy) * exp(-dx^2 / (2 wx^2) - dy^2 / (2 wy^2))
    var(J) = J^2 * Total / N^2                                  Poisson, on all counts

``dx, dy``: centroid minus the sensor centre ``((size - 1) / 2)`` in um, ``w = window_fraction
x sensor size``: a soft window that keeps the beam near the centre (a target, not a cut).
NDStats (ADCore NDPluginStats) computes Sigma over pixels at or above CentroidThreshold,
Total over all pixels; the pixel's own width (pixel^2 / 12) is inside SigmaX.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

from bluesky import plan_stubs as bps
from bluesky.utils import MsgGenerator

from configs.schema import CameraConfig

STATS = ("total", "max_value", "centroid_x", "centroid_y", "sigma_x", "sigma_y")


async def _maybe(value):
    return await value if inspect.isawaitable(value) else value


async def _signal_value(signal) -> float:
    """A signal's value from either flavour (ophyd-async ``get_value``, classic ``get``)."""
    getter = getattr(signal, "get_value", None)
    return float(await _maybe(getter() if getter else signal.get()))


class FluxDensity:
    """Flux density at a beam camera, J (module doc), as a detector.

    Args:
        camera: a beam camera of either flavour (``trigger``, ``read``, ``acquire_time``).
        config: the camera's ``beamline.elements`` entry (sensor size, pixel, saturation).
        dark_cps_per_pixel: camera dark/background rate, counts/s per pixel (measure it with
            :func:`measure_dark`).
        min_snr: an evaluation fails if the signal counts N are below ``min_snr`` standard
            deviations of the background counts (beam off the camera).
        window_fraction: rms of the centring window, fraction of the sensor size.
        name: the field name of J.
    """

    def __init__(self, camera, config: CameraConfig, dark_cps_per_pixel: float = 0.0,
                 min_snr: float = 5.0, window_fraction: float = 0.25,
                 name: str = "flux_density"):
        if dark_cps_per_pixel < 0 or min_snr < 0 or window_fraction <= 0:
            raise ValueError(f"FluxDensity: dark_cps_per_pixel={dark_cps_per_pixel} and "
                             f"min_snr={min_snr} must be >= 0, window_fraction="
                             f"{window_fraction} > 0")
        self.camera, self.config, self.name = camera, config, name
        self.dark_cps_per_pixel, self.min_snr = dark_cps_per_pixel, min_snr
        self.window_fraction = window_fraction
        self.parent = None

    @property
    def fields(self) -> tuple[str, str, str]:
        """(value, variance, failure) field names."""
        return self.name, f"{self.name}_variance", f"{self.name}_failure"

    @property
    def hints(self) -> dict:
        """J is the one hinted field (BestEffortCallback plots it, not every statistic)."""
        return {"fields": [self.name]}

    def trigger(self):
        return self.camera.trigger()

    async def describe(self) -> dict:
        described = dict(await _maybe(self.camera.describe()))
        source = f"beamagent:FluxDensity({self.camera.name})"
        value, variance, failure = self.fields
        described[value] = {"source": source, "dtype": "number", "shape": [],
                            "units": "counts/s/um^2"}
        described[variance] = {"source": source, "dtype": "number", "shape": [],
                               "units": "(counts/s/um^2)^2"}
        described[failure] = {"source": source, "dtype": "string", "shape": []}
        return described

    async def read(self) -> dict:
        reading = dict(await _maybe(self.camera.read()))
        exposure_s = await _signal_value(self.camera.acquire_time)
        stats = {k: float(reading[f"{self.camera.name}_{k}"]["value"]) for k in STATS}
        value, variance, failure = self.reduce(stats, exposure_s)
        now = time.time()
        for key, v in zip(self.fields, (value, variance, failure), strict=True):
            reading[key] = {"value": v, "timestamp": now}
        return reading

    def read_configuration(self) -> Any:
        return self.camera.read_configuration()

    def describe_configuration(self) -> Any:
        return self.camera.describe_configuration()

    def reduce(self, stats: dict[str, float], exposure_s: float) -> tuple[float, float, str]:
        """(J, var(J), failure) from NDStats values (pixels, counts) and the exposure (s)."""
        cam = self.config
        background = self.dark_cps_per_pixel * exposure_s * cam.array_length
        signal = stats["total"] - background
        floor = self.min_snr * math.sqrt(max(background, 1.0))
        if not signal >= floor:
            return 0.0, 0.0, (f"beam off camera: {signal:.0f} signal counts, below "
                              f"min_snr={self.min_snr} x background noise ({floor:.0f})")
        if stats["max_value"] >= cam.max_count:
            return 0.0, 0.0, (f"saturated: MaxValue {stats['max_value']:.0f} >= "
                              f"max_count {cam.max_count}; shorten AcquireTime")
        sx, sy = stats["sigma_x"] * cam.pixel_um, stats["sigma_y"] * cam.pixel_um
        if not (sx > 0 and sy > 0 and math.isfinite(stats["centroid_x"] + stats["centroid_y"])):
            return 0.0, 0.0, f"no spot: SigmaX={stats['sigma_x']}, SigmaY={stats['sigma_y']} px"
        dx = (stats["centroid_x"] - (cam.size_x - 1) / 2) * cam.pixel_um
        dy = (stats["centroid_y"] - (cam.size_y - 1) / 2) * cam.pixel_um
        wx = self.window_fraction * cam.size_x * cam.pixel_um
        wy = self.window_fraction * cam.size_y * cam.pixel_um
        j = (signal / exposure_s / (2 * math.pi * sx * sy)
             * math.exp(-0.5 * ((dx / wx) ** 2 + (dy / wy) ** 2)))
        return j, j * j * stats["total"] / (signal * signal), ""


def measure_dark(camera, shutter, frames: int = 3) -> MsgGenerator[float]:
    """Plan stub: the camera's dark rate, counts/s per pixel, with the shutter closed.

    Closes ``shutter`` (``set("CLOSED")``), averages NDStats MeanValue over ``frames`` frames
    divided by AcquireTime, and opens the shutter again (also on error).
    """
    from bluesky import preprocessors as bpp

    def dark() -> MsgGenerator[float]:
        yield from bps.mv(shutter, "CLOSED")
        exposure_s = yield from bps.rd(camera.acquire_time)
        total = 0.0
        for _ in range(frames):
            yield from bps.trigger(camera, wait=True)
            total += float((yield from bps.rd(camera.mean_value)))
        return total / frames / float(exposure_s)

    return (yield from bpp.finalize_wrapper(dark(), bps.mv(shutter, "OPEN")))
