"""Motion of the simulated motor record: ACCL ramps to VELO, retries, braking STOP, DMOV/MOVN.

Mixed into :class:`sim.motor_record.MotorRecord`, whose PVs (``self.dmov`` ...) it posts.
Sequence of one accepted move (as ophyd and ophyd-async expect, FIELD_NOTES):
DMOV 1->0, MOVN 1, RBV every tick, final RBV/HLS/LLS/RCNT/MISS, MOVN 0, DMOV 0->1, then the
pending ``.VAL`` put completes. A zero-length move keeps DMOV at 0 for one tick.
"""

from __future__ import annotations

import asyncio
import math

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
        """Move the motor toward ``goal`` (ACCL ramps, VELO), posting RBV each tick. Returns the
        switch hit."""
        loop = asyncio.get_running_loop()
        requested = self._target_dial
        end = self.mech.plan_end(goal)
        if end == self.mech.motor:
            await asyncio.sleep(self.tick_s)  # zero-length move: DMOV stays 0 for one tick
            return 0
        await self.movn.write(1)
        await self.tdir.write(int((end > self.mech.motor) == (self.sign > 0)))
        start, origin, v0 = loop.time(), self.mech.motor, 0.0
        covered, speed = 0.0, 0.0
        arrived, braking = False, False
        while not arrived:
            await asyncio.sleep(self.tick_s)
            if self._stop_requested and not braking:  # STOP: brake at the ACCL rate
                braking, direction = True, (1.0 if end >= origin else -1.0)
                rate = self.velo.value / self.accl.value if self.accl.value > 0 else math.inf
                end = self.mech.motor + direction * speed * speed / (2.0 * rate)
                start, origin, v0, covered = loop.time(), self.mech.motor, speed, 0.0
            elif self._target_dial != requested and not braking:  # retargeted mid-move
                requested = self._target_dial
                new_end = self.mech.plan_end(requested - self.shift)
                same_way = (new_end - self.mech.motor) * (end - origin) > 0
                end, start, origin = new_end, loop.time(), self.mech.motor
                v0, covered = (speed if same_way else 0.0), 0.0  # a reversal is not braked
            distance = abs(end - origin)
            x, speed = trapezoid(loop.time() - start, distance, v0, self.velo.value,
                                 self.accl.value)
            # the last step goes all the way: summed steps can miss ``end`` by rounding
            step = abs(end - self.mech.motor) if x >= distance else max(x - covered, 0.0)
            arrived, switch = self.mech.advance(end, step)
            covered = x
            await self._post_position()
            if switch:
                return switch
        return 0


def trapezoid(t: float, distance: float, v0: float, velo: float,
              accl: float) -> tuple[float, float]:
    """Distance covered (egu) and speed (egu/s) ``t`` s into a move of ``distance`` that starts
    at speed ``v0``: up to ``velo`` at velo/accl egu/s^2, then braking at the same rate to stop
    at the end, as the motor record moves (EPICS motor record manual: ACCL is the time to reach
    VELO). A move too short to reach ``velo`` is a triangle. ``accl`` <= 0: no ramps."""
    if accl <= 0 or velo <= 0:
        return min(velo * t, distance), (velo if velo * t < distance else 0.0)
    a = velo / accl
    v0 = min(v0, velo)
    peak = min(velo, math.sqrt(max((2.0 * a * distance + v0 * v0) / 2.0, v0 * v0)))
    if peak <= 0.0:  # nothing to cover from rest (e.g. a STOP before the motor got going)
        return 0.0, 0.0
    up = (peak - v0) / a
    d_up = (peak * peak - v0 * v0) / (2.0 * a)
    d_down = peak * peak / (2.0 * a)
    cruise = max(distance - d_up - d_down, 0.0) / peak
    if t < up:
        return v0 * t + 0.5 * a * t * t, v0 + a * t
    if t < up + cruise:
        return d_up + peak * (t - up), peak
    tau = t - up - cruise
    if tau < peak / a:
        x = d_up + peak * cruise + peak * tau - 0.5 * a * tau * tau
        return min(x, distance), peak - a * tau
    return distance, 0.0
