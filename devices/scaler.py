"""ophyd-async scaler (synApps scaler record) with a trigger that cannot read stale counts.

Fields used: CNT (start/done, put completes when counting ends), CONT (one-shot/auto),
TP (preset time, s), FREQ (clock Hz), T (elapsed s), Sn (counts of channel n), plus the
beamline's ``<record>:NACQ`` counter, incremented once per completed count and posted after
all Sn. Waiting for NACQ to increment is the fix for FIELD_NOTES "stale reads": CA monitor
updates of Sn can arrive after the CNT put reply, so a read right after the put can return
the previous acquisition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from ophyd_async.core import (
    DEFAULT_TIMEOUT,
    AsyncStatus,
    DeviceMock,
    StandardReadable,
    StrictEnum,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.epics.core import epics_signal_r, epics_signal_rw

from devices.errors import DeviceError

CLOCK_CHANNEL = 1  # scaler record convention: channel 1 counts the reference clock
NACQ_POLL_S = 0.002  # re-read period while NACQ has not yet moved


class CountState(StrictEnum):
    """Scaler record CNT menu."""

    DONE = "Done"
    COUNT = "Count"


class CountMode(StrictEnum):
    """Scaler record CONT menu."""

    ONE_SHOT = "OneShot"
    AUTO_COUNT = "AutoCount"


class ScalerTimeoutError(TimeoutError, DeviceError):
    """The acquisition counter did not increment after a count."""


class ScalerMock(DeviceMock["Scaler"]):
    """Mock behaviour: a CNT put completes a count at once -- CNT back to Done, NACQ + 1.
    Channel values are whatever ``set_mock_value`` put there."""

    async def connect(self, device: Scaler) -> None:
        async def _count(value: CountState) -> CountState:
            if value == CountState.COUNT:
                n = await device.acquisition_count.get_value()
                set_mock_value(device.acquisition_count, n + 1)
            return CountState.DONE

        callback_on_mock_put(device.count, _count)


@default_mock_class(ScalerMock)
class Scaler(StandardReadable):
    """A scaler whose channels are readables named by channel name.

    Args:
        prefix: scaler record name, e.g. ``"BL:SCALER1"``.
        channels: ``{channel_name: channel_number}``; channel names become event fields
            as they are (``"det"``, ``"i0"``, ``"clock"``), not ``"scaler-det"``.
        name: device name (config signals are ``<name>-preset_time`` etc.).
        nacq_timeout_s: how long after the count ends NACQ may take to increment.
        hinted: the channels named in the hints (None: all but the clock).

    Exposure: ``preset_time`` (TP, seconds), e.g. ``bps.mv(scaler.preset_time, 0.001)``.
    The ``hinted`` channels (default all but the clock) are in the hints.
    """

    def __init__(
        self,
        prefix: str,
        channels: Mapping[str, int],
        name: str = "",
        nacq_timeout_s: float = DEFAULT_TIMEOUT,
        hinted: Collection[str] | None = None,
    ) -> None:
        self._nacq_timeout_s = nacq_timeout_s
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.preset_time = epics_signal_rw(float, prefix + ".TP")
            self.clock_frequency = epics_signal_r(float, prefix + ".FREQ")
        self.count = epics_signal_rw(CountState, prefix + ".CNT")
        self.count_mode = epics_signal_rw(CountMode, prefix + ".CONT")
        self.elapsed_time = epics_signal_r(float, prefix + ".T")
        self.acquisition_count = epics_signal_r(int, prefix + ":NACQ")
        self._channel_names = dict(channels)
        for channel_name, number in channels.items():
            if hasattr(self, channel_name):
                raise ValueError(f"scaler channel name {channel_name!r} clashes with a field")
            # Uncached: each read is a fresh CA get issued after NACQ moved, so freshness does
            # not depend on the order in which the IOC's monitor updates arrive.
            plotted = number != CLOCK_CHANNEL and (hinted is None or channel_name in hinted)
            fmt = Format.HINTED_UNCACHED_SIGNAL if plotted else Format.UNCACHED_SIGNAL
            with self.add_children_as_readables(fmt):
                setattr(self, channel_name, epics_signal_r(int, f"{prefix}.S{number}"))
        super().__init__(name)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in config order; also their event field names."""
        return tuple(self._channel_names)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        for channel_name in getattr(self, "_channel_names", {}):
            getattr(self, channel_name).set_name(channel_name)

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """One-shot mode (as ophyd's EpicsScaler stage_sigs), then start monitors."""
        await self.count_mode.set(CountMode.ONE_SHOT)
        await super().stage()

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Count for ``preset_time`` s; done once NACQ has incremented (fresh reads).

        NACQ is polled with CA gets rather than watched with a monitor: the IOC posts it
        before completing the CNT put, so the first get after the put usually sees it,
        while a monitor update may be batched by the server for up to 10 ms.

        Raises ScalerTimeoutError if NACQ does not increment within ``nacq_timeout_s``.
        """
        before, exposure_s = await asyncio.gather(
            self.acquisition_count.get_value(cached=False), self.preset_time.get_value()
        )
        await self.count.set(CountState.COUNT, timeout=exposure_s + DEFAULT_TIMEOUT)
        await self._wait_for_acquisition_after(before)

    async def _wait_for_acquisition_after(self, before: int) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._nacq_timeout_s
        while (now := await self.acquisition_count.get_value(cached=False)) <= before:
            if loop.time() > deadline:
                raise ScalerTimeoutError(
                    f"{self.name}: {self.acquisition_count.source} stayed at {before} for "
                    f"{self._nacq_timeout_s} s after the count ended"
                )
            await asyncio.sleep(NACQ_POLL_S)
        return now
