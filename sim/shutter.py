"""Photon shutter: ``SHUTTER`` (bo command) and ``SHUTTER:STATUS`` (bi, lags the command)."""

from __future__ import annotations

import asyncio

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from sim.config import ShutterConfig

STATES = ("CLOSED", "OPEN")


class ShutterGroup(PVGroup):
    command = pvproperty(name="SHUTTER", value="OPEN", dtype=ChannelType.ENUM,
                         enum_strings=STATES, doc="Shutter command: 0 CLOSED, 1 OPEN")
    status = pvproperty(name="SHUTTER:STATUS", value="OPEN", dtype=ChannelType.ENUM,
                        enum_strings=STATES, read_only=True,
                        doc="Shutter position readback; follows the command after delay_s")

    def __init__(self, prefix: str, cfg: ShutterConfig, **kwargs):
        super().__init__(prefix, **kwargs)
        self.cfg = cfg
        self.is_open = cfg.initially_open
        self._moving: asyncio.Task | None = None

    async def initialise(self) -> None:
        state = STATES[int(self.is_open)]
        await self.command.write(state)
        await self.status.write(state)

    @command.putter
    async def command(self, instance, value):
        if self._moving is not None:
            self._moving.cancel()
        self._moving = asyncio.create_task(self._actuate(value == "OPEN"))
        return value

    async def _actuate(self, opening: bool) -> None:
        await asyncio.sleep(self.cfg.delay_s)
        self.is_open = opening  # the beam follows the blade, i.e. the status, not the command
        await self.status.write(STATES[int(opening)])
