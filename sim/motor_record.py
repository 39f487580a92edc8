"""An EPICS motor record as a caproto PVGroup: ``{prefix}{pv}`` plus ``.FIELD`` PVs.

Emulates the union of fields used by ophyd ``EpicsMotor`` and ophyd-async ``Motor``
(motor record reference: EPICS motor module, motorRecord.html). Coordinates:
``user = sign(DIR) * dial + OFF``; ``dial = mechanical + shift`` (shift changes only on a
Frozen-offset SET). Soft limits live in dial coordinates (DHLM/DLLM) and are mirrored into
user HLM/LLM and into the control limits of the ``.VAL`` channel.
"""

from __future__ import annotations

import asyncio

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, PvpropertyDouble, pvproperty

from configs.schema import MotorConfig
from sim.autosave import MotorState
from sim.config import MotorSimConfig
from sim.errors import MotorLimitError
from sim.motor_model import Mechanics
from sim.motor_motion import MotionMixin

HARD_END_MARGIN = 0.02  # limit switches sit 2 % of the soft range beyond the soft limits


def _f(doc: str, units: str = "", **kw) -> pvproperty:
    return pvproperty(value=0.0, dtype=float, doc=doc, units=units, **kw)


def _i(doc: str, value: int = 0, **kw) -> pvproperty:
    return pvproperty(value=value, dtype=int, doc=doc, units="", **kw)


def _s(doc: str, **kw) -> pvproperty:
    return pvproperty(value="", dtype=ChannelType.STRING, doc=doc, **kw)


def _e(doc: str, states: tuple[str, ...], **kw) -> pvproperty:
    return pvproperty(value=states[0], dtype=ChannelType.ENUM, enum_strings=states, doc=doc, **kw)


class _LimitedDouble(PvpropertyDouble):
    """A double whose control-limit rejection names the value, limits and units."""

    async def verify_value(self, value):
        v = value[0] if isinstance(value, list | tuple | np.ndarray) and len(value) == 1 else value
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        if lo != hi and np.isscalar(v) and not lo <= v <= hi:
            raise MotorLimitError(
                f"put of {self.pvname} = {v} {self.units} outside limits [{lo}, {hi}] {self.units}")
        return await super().verify_value(value)


class MotorRecord(MotionMixin, PVGroup):
    """One motor record; construct with ``prefix='BL:SAMPLE:X'`` (no trailing dot)."""

    type_map = {**PVGroup.type_map, float: _LimitedDouble}

    val = _f("User desired value (VAL); put completes when the move ends", name=".VAL")
    dval = _f("Dial desired value (DVAL)", name=".DVAL")
    rbv = _f("User readback value (RBV)", name=".RBV", read_only=True)
    drbv = _f("Dial readback value (DRBV)", name=".DRBV", read_only=True)
    off = _f("User offset (OFF): user = sign(DIR) * dial + OFF", name=".OFF")
    dir = _e("User direction (DIR)", ("Pos", "Neg"), name=".DIR")
    foff = _e("Offset-freeze switch (FOFF)", ("Variable", "Frozen"), name=".FOFF")
    set = _e("Set/Use switch (SET): Set calibrates without moving", ("Use", "Set"), name=".SET")
    velo = _f("Velocity (VELO), must be > 0", name=".VELO")
    vmax = _f("Maximum velocity (VMAX)", name=".VMAX", read_only=True)
    accl = _f("Seconds to velocity (ACCL)", "s", name=".ACCL")
    egu = _s("Engineering units (EGU)", name=".EGU", read_only=True)
    prec = _i("Display precision (PREC)", 4, name=".PREC", read_only=True)
    desc = _s("Descriptor (DESC)", name=".DESC")
    movn = _i("Motor is moving (MOVN)", name=".MOVN", read_only=True)
    dmov = _i("Done moving to value (DMOV): 1->0->1 on every accepted move", 1, name=".DMOV",
              read_only=True)
    hls = _i("At high limit switch (HLS)", name=".HLS", read_only=True)
    lls = _i("At low limit switch (LLS)", name=".LLS", read_only=True)
    hlm = _f("User high limit (HLM)", name=".HLM")
    llm = _f("User low limit (LLM)", name=".LLM")
    dhlm = _f("Dial high limit (DHLM)", name=".DHLM")
    dllm = _f("Dial low limit (DLLM)", name=".DLLM")
    tdir = _i("Direction of travel (TDIR): 1 positive", name=".TDIR", read_only=True)
    stop = _i("Stop (STOP): write 1 to halt; VAL becomes the stop position", name=".STOP")
    homf = _i("Home forward (HOMF): write 1 to move to dial 0", name=".HOMF")
    homr = _i("Home reverse (HOMR): write 1 to move to dial 0", name=".HOMR")
    mres = _f("Motor step size (MRES)", name=".MRES", read_only=True)
    eres = _f("Encoder step size (ERES)", name=".ERES", read_only=True)
    srev = _i("Steps per revolution (SREV)", 2000, name=".SREV", read_only=True)
    urev = _f("EGU per revolution (UREV)", name=".UREV", read_only=True)
    rdbd = _f("Retry deadband (RDBD)", name=".RDBD", read_only=True)
    rtry = _i("Maximum retry count (RTRY)", 3, name=".RTRY")
    rcnt = _i("Retry count of the last move (RCNT)", name=".RCNT", read_only=True)
    miss = _i("Ran out of retries (MISS): the last move ended outside RDBD", name=".MISS",
              read_only=True)
    out = _s("Output link (OUT)", name=".OUT", read_only=True)

    def __init__(self, prefix: str, motor: MotorConfig, sim: MotorSimConfig, tick_s: float,
                 rng: np.random.Generator, **kwargs):
        super().__init__(prefix, **kwargs)
        self.motor_cfg, self.sim_cfg, self.tick_s = motor, sim, tick_s
        margin = HARD_END_MARGIN * (motor.high_limit - motor.low_limit)
        self.mech = Mechanics(motor.initial_position, sim, motor.low_limit - margin,
                              motor.high_limit + margin, rng)
        self.shift = 0.0  # dial = mechanical + shift
        self._off = 0.0  # OFF and sign(DIR): python state, mirrored in the PVs
        self.sign = 1
        self.dial_limits = (motor.low_limit, motor.high_limit)
        self._target_dial = motor.initial_position
        self._task: asyncio.Task | None = None
        self._done: asyncio.Future | None = None
        self._stop_requested = False
        self._finishing = False
        self._restored: dict[str, float] = {}  # VELO/ACCL from an autosave (sim.autosave)
        # The record name itself is the VAL field, as in an IOC.
        self.pvdb[prefix] = self.val

    # ---- coordinates -------------------------------------------------------------------

    def user_of(self, dial: float) -> float:
        return self.sign * dial + self._off

    def dial_of(self, user: float) -> float:
        return (user - self._off) * self.sign

    def user_limits(self) -> tuple[float, float]:
        lo, hi = sorted((self.user_of(self.dial_limits[0]), self.user_of(self.dial_limits[1])))
        return lo, hi

    @property
    def position(self) -> float:
        """Mechanical (true load) position, egu: what the hidden physics uses."""
        return self.mech.load

    # ---- autosave ----------------------------------------------------------------------
    def autosave_state(self) -> MotorState:
        """Position (mechanical motor and load, dial shift) and settings, for sim.autosave.
        A move in progress is saved where it is now."""
        return MotorState(motor=self.mech.motor, load=self.mech.load, shift=self.shift,
                          off=self._off, dir="Neg" if self.sign < 0 else "Pos",
                          dllm=self.dial_limits[0], dhlm=self.dial_limits[1],
                          velo=float(self.velo.value), accl=float(self.accl.value))

    def restore(self, state: MotorState) -> None:
        """Take a saved position and settings; call before ``initialise``, which posts them.

        Raises:
            MotorLimitError: the saved position is beyond the travel ends of this config.
        """
        lo, hi = self.mech.hard_low, self.mech.hard_high
        for name, value in (("motor", state.motor), ("load", state.load)):
            if not lo <= value <= hi:
                raise MotorLimitError(f"{self.prefix}: saved {name} position {value} is beyond "
                                      f"the travel ends [{lo}, {hi}] {self.motor_cfg.egu}")
        self.mech.motor, self.mech.load = state.motor, state.load
        self.shift, self._off = state.shift, state.off
        self.sign = -1 if state.dir == "Neg" else 1
        self.dial_limits = (state.dllm, state.dhlm)
        self._target_dial = self.mech.load + self.shift  # not moving after a restart
        self._restored = {"velo": state.velo, "accl": state.accl}

    # ---- start-up ----------------------------------------------------------------------
    async def initialise(self) -> None:
        """Write the config values (or the restored ones). Call before the server accepts
        clients."""
        m = self.motor_cfg
        await self.egu.write(m.egu)
        await self.desc.write(m.description)
        await self.prec.write(m.precision)
        await self.vmax.write(m.velocity * 10)
        velo = self._restored.get("velo", m.velocity)
        await self.velo.write(velo if 0 < velo <= m.velocity * 10 else m.velocity,
                              verify_value=False)
        await self.accl.write(self._restored.get("accl", m.acceleration_s))
        await self.off.write(self._off, verify_value=False)
        await self.dir.write("Neg" if self.sign < 0 else "Pos", verify_value=False)
        await self.rdbd.write(m.tolerance)
        await self.rtry.write(self.sim_cfg.retries)
        step = m.tolerance / 10.0
        await self.mres.write(step)
        await self.eres.write(step)
        await self.urev.write(step * self.srev.value)
        await self.out.write(f"@asyn(SIM_{m.name.upper()},0)")
        for pv in (self.val, self.dval, self.rbv, self.drbv, self.hlm, self.llm, self.dhlm,
                   self.dllm, self.off, self.mres, self.eres, self.urev, self.rdbd):
            await pv.write_metadata(units=m.egu, precision=m.precision)
        await self.velo.write_metadata(units=f"{m.egu}/s")
        await self.vmax.write_metadata(units=f"{m.egu}/s")
        await self._post_limits()
        await self._post_position(final=True)
        await self.val.write(self.user_of(self._target_dial), verify_value=False)
        await self.dval.write(self._target_dial, verify_value=False)

    async def _post_limits(self) -> None:
        lo_d, hi_d = self.dial_limits
        lo_u, hi_u = self.user_limits()
        await self.dllm.write(lo_d, verify_value=False)
        await self.dhlm.write(hi_d, verify_value=False)
        await self.llm.write(lo_u, verify_value=False)
        await self.hlm.write(hi_u, verify_value=False)
        for pv, lo, hi in ((self.val, lo_u, hi_u), (self.dval, lo_d, hi_d)):
            await pv.write_metadata(lower_ctrl_limit=lo, upper_ctrl_limit=hi,
                                    lower_disp_limit=lo, upper_disp_limit=hi)

    async def _post_position(self, final: bool = False) -> None:
        dial = self.mech.readback() + self.shift
        await self.drbv.write(dial)
        await self.rbv.write(self.user_of(dial))
        if final:
            lo, hi = self.mech.switches()
            high, low = (hi, lo) if self.sign > 0 else (lo, hi)
            await self.hls.write(high)
            await self.lls.write(low)

    # ---- putters -----------------------------------------------------------------------
    @val.putter
    async def val(self, instance, value):
        if self.set.value == "Set":
            await self._calibrate(value)
            return value
        dial = self.dial_of(value)
        self._check_dial(dial)
        # VAL reads the new target at once; the put itself completes when motion ends
        await instance.write(value, verify_value=False, update_fields=False)
        await self.dval.write(dial, verify_value=False)
        return await self.move_dial(dial)

    @dval.putter
    async def dval(self, instance, value):
        user = await self.move_dial(value)
        await self.val.write(user, verify_value=False)
        return self.dial_of(user)

    @stop.putter
    async def stop(self, instance, value):
        if value and self._task is not None and not self._task.done():
            self._stop_requested = True
        return 0

    @homf.putter
    async def homf(self, instance, value):
        if value:
            await self.val.write(self.user_of(0.0))
        return 0

    @homr.putter
    async def homr(self, instance, value):
        if value:
            await self.val.write(self.user_of(0.0))
        return 0

    @velo.putter
    async def velo(self, instance, value):
        if not 0 < value <= self.vmax.value:
            raise MotorLimitError(
                f"{self.prefix}.VELO={value} outside (0, VMAX={self.vmax.value}] "
                f"{self.motor_cfg.egu}/s")
        return value

    @hlm.putter
    async def hlm(self, instance, value):
        await self._set_user_limit(high=value)
        return value

    @llm.putter
    async def llm(self, instance, value):
        await self._set_user_limit(low=value)
        return value

    @dhlm.putter
    async def dhlm(self, instance, value):
        self.dial_limits = (self.dial_limits[0], value)
        await self._post_limits()
        return value

    @dllm.putter
    async def dllm(self, instance, value):
        self.dial_limits = (value, self.dial_limits[1])
        await self._post_limits()
        return value

    @off.putter
    async def off(self, instance, value):
        await self._recalibrate(off=value)
        return value

    @dir.putter
    async def dir(self, instance, value):
        await self._recalibrate(direction=value)
        return value

    async def _set_user_limit(self, low: float | None = None, high: float | None = None) -> None:
        lo_u, hi_u = self.user_limits()
        lo_u, hi_u = (lo_u if low is None else low), (hi_u if high is None else high)
        if lo_u > hi_u:
            raise MotorLimitError(f"{self.prefix}: LLM {lo_u} above HLM {hi_u}")
        self.dial_limits = tuple(sorted((self.dial_of(lo_u), self.dial_of(hi_u))))
        await self._post_limits()

    async def _recalibrate(self, off: float | None = None, direction: str | None = None) -> None:
        """OFF or DIR changed: dial values stay, user values (VAL, RBV, HLM, LLM) follow."""
        if off is not None:
            self._off = off
        if direction is not None:
            self.sign = -1 if direction == "Neg" else 1
        await self._post_limits()
        await self._post_position()
        await self.val.write(self.user_of(self._target_dial), verify_value=False)

    async def _calibrate(self, user: float) -> None:
        """SET mode: make RBV read ``user`` without motion (Variable: OFF; Frozen: dial)."""
        if self.foff.value == "Frozen":
            dial = self.dial_of(user)
            self.shift = dial - self.mech.load
            self._target_dial = dial
            await self.dval.write(dial, verify_value=False)
        else:
            dial = self.mech.load + self.shift
            self._off = user - self.sign * dial
            await self.off.write(self._off, verify_value=False)
            self._target_dial = dial
            await self._post_limits()
        await self._post_position()
