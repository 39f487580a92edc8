"""Storage-ring current: exponential decay, dumps and refills (by PV or by schedule)."""

from __future__ import annotations

import asyncio
import math
import time

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from sim.config import RingConfig


class RingCurrent:
    """I(t) = I_fill * exp(-(t - t_fill) / lifetime); 0 after a dump until a refill."""

    def __init__(self, cfg: RingConfig, clock=time.monotonic):
        self.cfg, self.clock = cfg, clock
        self.fill_ma, self.t_fill = cfg.nominal_ma, clock()

    def current_ma(self) -> float:
        age_s = self.clock() - self.t_fill
        return self.fill_ma * math.exp(-age_s / (self.cfg.lifetime_h * 3600.0))

    def fraction(self) -> float:
        """Current over nominal: the factor that scales every count rate."""
        return self.current_ma() / self.cfg.nominal_ma

    def dump(self) -> None:
        self.fill_ma, self.t_fill = 0.0, self.clock()

    def refill(self) -> None:
        self.fill_ma, self.t_fill = self.cfg.nominal_ma, self.clock()


class RingGroup(PVGroup):
    """``{prefix}RING:CURRENT`` (ai), ``RING:DUMP`` and ``RING:REFILL`` (bo, write 1)."""

    current = pvproperty(name="RING:CURRENT", value=0.0, read_only=True, units="mA",
                         precision=2, doc="Stored beam current")
    dump = pvproperty(name="RING:DUMP", value="Idle", dtype=ChannelType.ENUM,
                      enum_strings=("Idle", "Dump"), doc="Write 1 to dump the beam")
    refill = pvproperty(name="RING:REFILL", value="Idle", dtype=ChannelType.ENUM,
                        enum_strings=("Idle", "Refill"),
                        doc="Write 1 to refill to the nominal current")

    def __init__(self, prefix: str, ring: RingCurrent, **kwargs):
        super().__init__(prefix, **kwargs)
        self.ring = ring

    async def initialise(self) -> None:
        await self.current.write(self.ring.current_ma())

    @dump.putter
    async def dump(self, instance, value):
        if value == "Dump":
            self.ring.dump()
            await self.current.write(self.ring.current_ma())
        return "Idle"

    @refill.putter
    async def refill(self, instance, value):
        if value == "Refill":
            self.ring.refill()
            await self.current.write(self.ring.current_ma())
        return "Idle"

    async def run(self) -> None:
        """Post the current every ``update_period_s`` and apply the schedule."""
        start = self.ring.clock()
        pending = sorted(self.ring.cfg.schedule, key=lambda e: e.at_s)
        while True:
            now = self.ring.clock() - start
            while pending and pending[0].at_s <= now:
                getattr(self.ring, pending.pop(0).action)()
            await self.current.write(self.ring.current_ma())
            await asyncio.sleep(self.ring.cfg.update_period_s)
