"""A RunEngine pause mid-move of a classic VerifiedEpicsMotor resumes; a plain stop fails.

bluesky pauses call ``stop(success=True)`` on the devices being moved and re-issue the move
on resume, so the interrupted move must not fail verification (it used to: MoveError
"ended at readback ..." and a FailedStatus on ``RE.resume()``).
"""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from devices import MoveError
from tests.devices_system_helpers import connect_classic_beamline, wait_until

pytestmark = pytest.mark.system

TARGET = 8.0  # from 0 at 5 mm/s: 1.6 s of motion


@pytest.fixture(scope="module")
def cbl(sim_beamline):
    beamline = connect_classic_beamline(sim_beamline.config_path)
    try:
        yield beamline
    finally:
        x = beamline.sample_stage.x
        try:
            x.set(sim_beamline.config.motor("sample_x").initial_position).wait(15)
        finally:
            beamline.destroy()


def _wait_idle(x, timeout_s: float = 5.0) -> None:
    wait_until(lambda: x.motor_done_move.get(use_monitor=False) == 1, timeout_s,
               f"{x.name} DMOV=1")


def _moving_past(x, position: float, timeout_s: float = 5.0) -> None:
    wait_until(lambda: x.user_readback.get(use_monitor=False) > position, timeout_s,
               f"{x.name} readback past {position}")


def test_pause_mid_move_resumes_to_target(cbl):
    x = cbl.sample_stage.x
    x.set(0.0).wait(15)
    RE = RunEngine()
    events: list[dict] = []
    stops: list[dict] = []
    paused_at: dict[str, float] = {}
    errors: list[BaseException] = []
    moves: list = []  # the status of the set(); on resume the RunEngine replays it itself

    def plan():
        yield from bps.open_run()
        yield from bps.checkpoint()
        moves.append((yield from bps.abs_set(x, TARGET, group="move")))  # = bps.mv
        yield from bps.wait("move")
        yield from bps.trigger_and_read([x])
        yield from bps.close_run()

    def pauser() -> None:  # mid-move, about 2 mm into the 8 mm move
        try:
            _moving_past(x, 2.0)
            paused_at["readback"] = x.user_readback.get(use_monitor=False)
            RE.request_pause(defer=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def collect(name, doc):
        if name == "event":
            events.append(doc["data"])
        elif name == "stop":
            stops.append(doc)

    thread = threading.Thread(target=pauser, daemon=True)
    thread.start()
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(plan(), collect)
        thread.join(10)
        assert not errors, errors
        assert RE.state == "paused"
        assert paused_at["readback"] < TARGET - 1.0  # really interrupted mid-move
        assert not events
        _wait_idle(x)
        assert x.user_readback.get(use_monitor=False) < TARGET - 1.0  # stopped short
        # The interrupted move reports success (it used to fail with MoveError "... ended
        # at readback ...", and RE.resume() raised FailedStatus).
        wait_until(lambda: moves[0].done, 5, "the interrupted move's status")
        assert moves[0].success, moves[0].exception()

        RE.resume()
        assert RE.state == "idle"
        assert len(events) == 1
        assert events[0]["sample_x"] == pytest.approx(TARGET, abs=1e-3)
        assert [s["exit_status"] for s in stops] == ["success"]
        assert x.user_readback.get(use_monitor=False) == pytest.approx(TARGET, abs=1e-3)
    finally:
        if RE.state != "idle":
            RE.abort("test cleanup")
        _wait_idle(x)


def test_plain_stop_still_fails_the_move(cbl):
    x = cbl.sample_stage.x
    x.set(0.0).wait(15)
    status = x.set(TARGET)
    _moving_past(x, 1.0)
    x.stop()  # success=False: not a pause, the move did not reach its target
    # Stock EpicsMotor often ends the inner status with success on the DMOV 0->1 that STOP
    # causes, before stop(success=False) can fail it: verification gives the MoveError.
    with pytest.raises(MoveError, match="move of sample_x to 8.0 mm"):
        status.wait(10)
    assert status.done and not status.success
    _wait_idle(x)
    assert x.user_readback.get(use_monitor=False) < TARGET - 1.0

    # A success=True stop finishes its move; its flag does not carry to the next move.
    x.set(0.0).wait(15)
    status = x.set(TARGET)
    _moving_past(x, 1.0)
    x.stop(success=True)
    status.wait(10)
    assert status.success
    _wait_idle(x)
    start = x.user_readback.get(use_monitor=False)
    status = x.set(TARGET)
    _moving_past(x, start + 1.0)
    x.stop()
    with pytest.raises(MoveError, match="move of sample_x to 8.0 mm"):
        status.wait(10)
    _wait_idle(x)
