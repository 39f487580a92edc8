"""Motion of the simulated motor record: travel at VELO, retries, STOP, DMOV/MOVN.

Mixed into :class:`sim.motor_record.MotorRecord`, whose PVs (``self.dmov`` ...) it posts.
Sequence of one accepted move (as ophyd and ophyd-async expect, FIELD_NOTES):
DMOV 1->0, MOVN 1, RBV every tick, final RBV/HLS/LLS/RCNT/MISS, MOVN 0, DMOV 0->1, then the
pending ``.VAL`` put completes. A zero-length move keeps DMOV at 0 for one tick.
"""

from __future__ import annotations

import asyncio

from sim.errors import MotorLimitError


class MotionMixin:
    """Motion state machine; needs the MotorRecord attributes (mech, shift, PVs)."""

    async def move_dial(self, dial: float) -> float:
        """Move to ``dial``; returns the final user setpoint when motion has ended.

        Raises:
            MotorLimitError: ``dial`` is outside [DLLM, DHLM]; nothing moves.
        """
        self._check_dial(dial)
        while self._finishing and self._task is not None and not self._task.done():
            await asyncio.wait({self._task})  # a move wrapping up cannot be retargeted
        self._target_dial = dial
        if self._task is None or self._task.done():
            self._stop_requested = False
            self._done = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._motion(self._done))
        return await asyncio.shield(self._done)

    def _check_dial(self, dial: float) -> None:
        lo, hi = self.dial_limits
        if not lo <= dial <= hi:
            user = self.user_of(dial)
            ulo, uhi = self.user_limits()
            raise MotorLimitError(
                f"move of {self.prefix} to {user} {self.motor_cfg.egu} outside limits "
                f"[{ulo}, {uhi}] {self.motor_cfg.egu}")

    async def _motion(self, done: asyncio.Future) -> None:
        try:
            self._finishing = False
            await self.dmov.write(0)
            retries = await self._move_with_retries()
            self._finishing = True
            await self._post_position(final=True)
            missed = abs(self.mech.load + self.shift - self._target_dial) > self.rdbd.value
            await self.rcnt.write(retries)
            await self.miss.write(int(missed and not self._stop_requested))
            await self.movn.write(0)
            if self._stop_requested:  # VAL follows the stop position, as in the record
                self._target_dial = self.mech.load + self.shift
                await self.dval.write(self._target_dial, verify_value=False)
            await self.dmov.write(1)
            done.set_result(self.user_of(self._target_dial))
        except BaseException as exc:  # never leave a put hanging
            if not done.done():
                done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise

    async def _move_with_retries(self) -> int:
        """Travel, then retry with encoder feedback (RTRY) while the load misses RDBD."""
        retries = 0
        goal = self._target_dial - self.shift
        while True:
            before = self.mech.load
            if await self._travel(goal):
                return retries  # hit a limit switch
            error = (self._target_dial - self.shift) - self.mech.load
            if self._stop_requested or abs(error) <= self.rdbd.value:
                return retries
            if retries >= self.rtry.value or (retries and self.mech.load == before):
                return retries  # out of retries, or stalled: no progress possible
            retries += 1
            goal = self.mech.motor + error

    async def _travel(self, goal: float) -> int:
        """Move the motor toward ``goal`` at VELO, posting RBV each tick. Returns the switch hit."""
        loop = asyncio.get_running_loop()
        requested = self._target_dial
        end = self.mech.plan_end(goal)
        if end == self.mech.motor:
            await asyncio.sleep(self.tick_s)  # zero-length move: DMOV stays 0 for one tick
            return 0
        await self.movn.write(1)
        await self.tdir.write(int((end > self.mech.motor) == (self.sign > 0)))
        last = loop.time()
        arrived = False
        while not arrived and not self._stop_requested:
            await asyncio.sleep(self.tick_s)
            if self._target_dial != requested:  # retargeted by a new VAL put mid-move
                requested = self._target_dial
                end = self.mech.plan_end(requested - self.shift)
            now = loop.time()
            arrived, switch = self.mech.advance(end, self.velo.value * (now - last))
            last = now
            await self._post_position()
            if switch:
                return switch
        return 0
