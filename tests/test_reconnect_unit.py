"""plans.reconnect with simulated devices and a scripted connection watch (no IOC).

The real thing, an IOC SIGKILLed and restarted under gp_scan, is in test_reconnect_system.
"""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky.utils import FailedStatus
from ophyd.sim import SynAxis, SynGauss
from ophyd.status import Status

from devices.errors import DeviceConnectError
from plans import reconnect
from plans.gp_scan import move_verified
from plans.reconnect import Reconnector, ReconnectTimeoutError, changed_settings


class ScriptedWatch:
    """Stands in for devices.connection.ConnectionWatch."""

    def __init__(self, reconnect_error: Exception | None = None):
        self.epoch, self.losses, self.closed = 0, [], False
        self.reconnect_error = reconnect_error

    def lose(self, name: str) -> None:
        self.epoch += 1
        self.losses.append((0.0, name))

    def down(self) -> list[str]:
        return []

    async def wait_connected(self, timeout_s: float) -> float:
        if self.reconnect_error is not None:
            raise self.reconnect_error
        return 0.0

    def close(self) -> None:
        self.closed = True


class CutAxis(SynAxis):
    """A SynAxis whose first ``cuts`` moves fail as a disconnect would (the IOC dies)."""

    def __init__(self, *args, watch: ScriptedWatch, cuts: int = 1, lose: bool = True, **kw):
        super().__init__(*args, **kw)
        self.watch, self.cuts, self.lose, self.moves = watch, cuts, lose, 0

    def set(self, value):
        self.moves += 1
        if self.moves > self.cuts:
            return super().set(value)
        if self.lose:
            self.watch.lose(self.name)
            self.velocity.put(99.0)  # the restarted IOC's default
        status = Status(obj=self)
        threading.Timer(0.01, lambda: status.set_exception(
            RuntimeError(f"{self.name}: stalled" if not self.lose else
                         f"{self.name}: Virtual circuit disconnect"))).start()
        return status


def run_watched(RE, watch, plan) -> list:
    """Run ``plan`` with every ConnectionWatch replaced by ``watch``; its documents."""
    docs: list = []
    original = reconnect.ConnectionWatch.of
    reconnect.ConnectionWatch.of = classmethod(lambda cls, devices: watch)
    try:
        RE(plan(), lambda n, d: docs.append((n, d)))
    finally:
        reconnect.ConnectionWatch.of = original
    return docs


def run_point(RE, watch, motor, det, target=0.5, **kwargs):
    rc = Reconnector([det], [motor], timeout_s=5.0, **kwargs)

    def plan():
        yield from bps.open_run()
        yield from rc.start()
        yield from rc.point(lambda st: move_verified([motor], [target], [1e-3], st), index=0)
        yield from rc.close()
        yield from bps.close_run()

    return run_watched(RE, watch, plan)


def stream(docs, name):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == name}
    return [d["data"] for n, d in docs if n == "event" and d["descriptor"] in uids]


def test_a_move_cut_by_a_disconnect_is_redone_and_reported(RE, caplog):
    watch = ScriptedWatch()
    motor = CutAxis(name="m", watch=watch)
    det = SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)
    docs = run_point(RE, watch, motor, det)
    primary, recoveries = stream(docs, "primary"), stream(docs, "reconnects")
    assert len(primary) == 1 and primary[0]["m"] == pytest.approx(0.5)  # redone, arrived
    assert motor.moves == 2
    assert len(recoveries) == 1
    r = recoveries[0]
    assert r["reconnect_devices"] == "m" and "Virtual circuit disconnect" in r["reconnect_cause"]
    assert "m_velocity: 1 -> 99.0" in r["reconnect_settings_changed"]
    assert any("settings changed across the reconnect" in m for m in caplog.messages)
    assert watch.closed


def test_a_failure_that_is_no_disconnect_propagates(RE):
    watch = ScriptedWatch()
    motor = CutAxis(name="m", watch=watch, lose=False)
    det = SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)
    with pytest.raises(FailedStatus) as info:
        run_point(RE, watch, motor, det)
    assert "stalled" in str(info.value.__cause__)
    assert motor.moves == 1


def test_no_reconnection_within_the_bound_fails_naming_the_pvs(RE):
    watch = ScriptedWatch(DeviceConnectError("m not reconnected within 5.0 s; ['M.RBV']"))
    motor = CutAxis(name="m", watch=watch)
    det = SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)
    with pytest.raises(ReconnectTimeoutError, match=r"M\.RBV"):
        run_point(RE, watch, motor, det)


def test_a_point_cut_more_often_than_allowed_fails(RE):
    watch = ScriptedWatch()
    motor = CutAxis(name="m", watch=watch, cuts=3)
    det = SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)
    with pytest.raises(FailedStatus) as info:
        run_point(RE, watch, motor, det, max_recoveries=2)
    assert "Virtual circuit disconnect" in str(info.value.__cause__)
    assert motor.moves == 3


class LosingDetector(SynGauss):
    """Its first trigger "completes" while its IOC is lost (as a classic trigger can, on the
    restarted IOC's idle state)."""

    def __init__(self, *args, watch: ScriptedWatch, **kwargs):
        super().__init__(*args, **kwargs)  # triggers once itself
        self.watch, self.triggers = watch, 0

    def trigger(self):
        if hasattr(self, "watch"):
            self.triggers += 1
            if self.triggers == 1:
                self.watch.lose(self.name)
        return super().trigger()


def test_a_measurement_that_saw_a_disconnect_is_dropped_and_redone(RE):
    watch = ScriptedWatch()
    motor = SynAxis(name="m")
    det = LosingDetector("det", motor, "m", center=0, Imax=1, sigma=1, watch=watch)
    docs = run_point(RE, watch, motor, det)
    assert len(stream(docs, "primary")) == 1  # the first reading was never saved
    assert det.triggers == 2
    assert [r["reconnect_devices"] for r in stream(docs, "reconnects")] == ["det"]


def test_a_loss_between_points_is_verified_before_the_next(RE):
    watch = ScriptedWatch()
    motor = SynAxis(name="m")
    det = SynGauss("det", motor, "m", center=0, Imax=1, sigma=1)
    rc = Reconnector([det], [motor], timeout_s=5.0)

    def plan():
        yield from bps.open_run()
        yield from rc.start()
        yield from rc.point(lambda st: move_verified([motor], [0.1], [1e-3], st), index=0)
        watch.lose("m")  # while the plan waited for the agent, say
        yield from rc.point(lambda st: move_verified([motor], [0.2], [1e-3], st), index=1)
        yield from bps.close_run()

    docs = run_watched(RE, watch, plan)
    assert len(stream(docs, "primary")) == 2
    [r] = stream(docs, "reconnects")
    assert (r["reconnect_point"], r["reconnect_cause"]) == (1, "lost between points")


def test_changed_settings_names_each_change():
    before = {"tp": 0.05, "egu": "mm", "names": np.array([1, 2]), "same": 1.0}
    after = {"tp": 1.0, "egu": "mm", "names": np.array([1, 3]), "same": 1.0 + 1e-15}
    assert changed_settings(before, after) == ["tp: 0.05 -> 1.0",
                                               "names: array([1, 2]) -> array([1, 3])"]
    assert changed_settings({"gone": 1}, {}) == ["gone: 1 -> '<missing>'"]


# ---- a point whose first error comes before the loss is seen ---------------------------------

class CutLate(SynAxis):
    """Its first move's status fails 50 ms late, naming the lost channel (a classic
    VerifiedEpicsMotor cut by a disconnect), and the loss is seen only then."""

    def __init__(self, *args, watch: ScriptedWatch, **kw):
        super().__init__(*args, **kw)
        self.watch, self.moves = watch, 0

    def set(self, value):
        self.moves += 1
        if self.moves > 1:
            return super().set(value)
        status = Status(obj=self)

        def cut():
            self.watch.lose(self.name)
            status.set_exception(RuntimeError(f"move of {self.name} cut: lost Channel Access"))

        threading.Timer(0.05, cut).start()
        return status


class ResetOnce(SynAxis):
    """Its first ``set`` raises at once, before any loss is seen (a put on a circuit that
    is going away: "Connection reset by peer")."""

    moves = 0

    def set(self, value):
        self.moves += 1
        if self.moves == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().set(value)


def test_a_cut_status_failing_during_the_grace_sleep_counts_as_the_loss(RE):
    watch = ScriptedWatch()
    late, reset = CutLate(name="late", watch=watch), ResetOnce(name="reset")
    det = SynGauss("det", late, "late", center=0, Imax=1, sigma=1)
    rc = Reconnector([det], [late, reset], timeout_s=5.0)

    def plan():
        yield from bps.open_run()
        yield from rc.start()
        yield from rc.point(
            lambda st: move_verified([late, reset], [0.5, 0.5], [1e-3, 1e-3], st), index=0)
        yield from bps.close_run()

    docs = run_watched(RE, watch, plan)
    assert len(stream(docs, "primary")) == 1
    assert (late.moves, reset.moves) == (2, 2)
    [r] = stream(docs, "reconnects")
    assert "Connection reset by peer" in r["reconnect_cause"]


# ---- devices.classic_motor.VerifiedEpicsMotor: the stock MoveStatus of a move that is over ---

def fake_motor():
    """A VerifiedEpicsMotor on ophyd's fake signals, counting STOP writes."""
    from ophyd.sim import make_fake_device
    from ophyd.utils.epics_pvs import AlarmSeverity

    from devices.classic_motor import VerifiedEpicsMotor

    motor = make_fake_device(VerifiedEpicsMotor)("F:X", name="m")
    for signal, value in ((motor.velocity, 1.0), (motor.acceleration, 0.1),
                          (motor.motor_done_move, 1), (motor.user_readback, 0.0),
                          (motor.retry_deadband, 1e-3), (motor.motor_egu, "mm")):
        signal.sim_put(value)
    motor.user_setpoint.sim_set_limits((-10.0, 10.0))
    motor.motor_done_move.pvname = "F:X.DMOV"  # fake signals have no PV names
    motor.user_readback.alarm_severity = AlarmSeverity.NO_ALARM
    motor.stops = []
    motor.motor_stop.put = lambda value, **kw: motor.stops.append(value)
    return motor


def finish_move(motor, readback: float) -> None:
    motor.motor_done_move.sim_put(0)
    motor.user_readback.sim_put(readback)
    motor.motor_done_move.sim_put(1)


def pending(motor) -> list:
    return list(motor._unwrapped_callbacks[motor._SUB_REQ_DONE].values())


def test_a_superseded_move_fails_without_stopping_the_next_one():
    motor = fake_motor()
    first = motor.set(0.5)
    second = motor.set(0.7)  # stock: the first MoveStatus fails and calls stop()
    with pytest.raises(Exception, match="superseded by a move to 0.7 mm"):
        first.wait(2)
    finish_move(motor, 0.7)
    second.wait(2)
    assert motor.stops == [] and pending(motor) == []


def test_a_disconnect_fails_the_move_at_once_and_never_stops_a_later_move():
    motor = fake_motor()
    cut = motor.set(0.5)
    [inner] = [cb.__self__ for cb in pending(motor)]
    motor.motor_done_move._run_subs(sub_type="meta", connected=False)
    with pytest.raises(Exception, match="cut: lost Channel Access to F:X.DMOV"):
        cut.wait(0.5)
    assert "cut: lost Channel Access" in str(inner.exception(timeout=1)) and pending(motor) == []
    redo = motor.set(0.5)  # after the reconnect
    finish_move(motor, 0.5)
    redo.wait(2)
    assert motor.stops == []


def test_a_move_whose_put_fails_leaves_no_pending_status():
    motor = fake_motor()

    def refuse(value, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    motor.user_setpoint.put = refuse
    with pytest.raises(ConnectionResetError):
        motor.set(0.5)
    assert pending(motor) == []  # stock: its MoveStatus would stop the motor at its timeout
