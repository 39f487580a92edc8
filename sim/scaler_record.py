"""A synApps scaler record (the fields ophyd ``EpicsScaler`` connects to) plus ``:NACQ``.

``CNT=1`` counts for ``TP`` seconds; the put to CNT completes when counting is done and CNT
returns to 0. Channel 1 is the clock (FREQ * TP). The other channels come from a counts
function. ``{record}:NACQ`` increments once per completed count, posted after every Sn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from configs.schema import ScalerConfig

N_CHANNELS = 32


def _channel_fields() -> dict[str, pvproperty]:
    ns: dict[str, pvproperty] = {}
    for n in range(1, N_CHANNELS + 1):
        ns[f"s{n}"] = pvproperty(name=f".S{n}", value=0, dtype=int, read_only=True,
                                 units="counts", doc=f"Counts of channel {n} (S{n})")
        ns[f"nm{n}"] = pvproperty(name=f".NM{n}", value="", dtype=ChannelType.STRING,
                                  doc=f"Name of channel {n} (NM{n})")
        ns[f"pr{n}"] = pvproperty(name=f".PR{n}", value=0, dtype=int, units="counts",
                                  doc=f"Preset count of channel {n} (PR{n}); not used")
        ns[f"g{n}"] = pvproperty(name=f".G{n}", value="N", dtype=ChannelType.ENUM,
                                 enum_strings=("N", "Y"),
                                 doc=f"Gate control of channel {n} (G{n}); not used")
    return ns


ScalerChannels = type(PVGroup)("ScalerChannels", (PVGroup,), _channel_fields())

CountsFunction = Callable[[float], dict[int, int]]  # exposure s -> {channel number: counts}


class ScalerRecord(ScalerChannels):
    """Scaler record ``prefix`` (e.g. ``BL:SCALER1``), counting with ``counts_fn``."""

    cnt = pvproperty(name=".CNT", value="Done", dtype=ChannelType.ENUM,
                     enum_strings=("Done", "Count"),
                     doc="Count (CNT): write 1 to count TP seconds; put completes when done")
    cont = pvproperty(name=".CONT", value="OneShot", dtype=ChannelType.ENUM,
                      enum_strings=("OneShot", "AutoCount"),
                      doc="Count mode (CONT); AutoCount is not simulated")
    dly = pvproperty(name=".DLY", value=0.0, units="s", doc="Delay before counting (DLY)")
    dly1 = pvproperty(name=".DLY1", value=0.0, units="s", doc="Auto-count delay (DLY1)")
    t = pvproperty(name=".T", value=0.0, units="s", read_only=True,
                   doc="Elapsed time of the last count (T)")
    freq = pvproperty(name=".FREQ", value=1e7, units="Hz", read_only=True,
                      doc="Clock frequency of channel 1 (FREQ)")
    tp = pvproperty(name=".TP", value=1.0, units="s", doc="Preset time (TP), > 0")
    tp1 = pvproperty(name=".TP1", value=1.0, units="s", doc="Auto-count preset time (TP1)")
    rate = pvproperty(name=".RATE", value=10.0, units="Hz", doc="Display update rate (RATE)")
    rat1 = pvproperty(name=".RAT1", value=10.0, units="Hz", doc="Auto-count update rate (RAT1)")
    egu = pvproperty(name=".EGU", value="counts", dtype=ChannelType.STRING,
                     doc="Engineering units (EGU)")
    nacq = pvproperty(name=":NACQ", value=0, dtype=int, read_only=True, units="",
                      doc="Completed acquisitions; incremented after all Sn of a count")

    def __init__(self, prefix: str, config: ScalerConfig, counts_fn: CountsFunction, **kwargs):
        super().__init__(prefix, **kwargs)
        self.config = config
        self.counts_fn = counts_fn
        self._lock = asyncio.Lock()

    def channel(self, n: int):
        return getattr(self, f"s{n}")

    async def initialise(self) -> None:
        """Write FREQ and the channel names from config."""
        await self.freq.write(self.config.clock_hz)
        for ch in self.config.channels:
            await getattr(self, f"nm{ch.number}").write(ch.name)

    @tp.putter
    async def tp(self, instance, value):
        if not value > 0:
            raise ValueError(f"{self.prefix}.TP={value} s: preset time must be > 0 s")
        return value

    @cnt.putter
    async def cnt(self, instance, value):
        if value != "Count":
            return "Done"
        async with self._lock:  # a second CNT=1 waits for the first count
            await instance.write("Count", verify_value=False)
            await self._count(self.tp.value)
        return "Done"

    async def _count(self, exposure_s: float) -> None:
        await asyncio.sleep(exposure_s)
        counts = self.counts_fn(exposure_s)
        await self.t.write(exposure_s)
        await self.s1.write(int(round(self.config.clock_hz * exposure_s)))
        for number, value in counts.items():
            if number != 1:
                await self.channel(number).write(value)
        await self.nacq.write(self.nacq.value + 1)
