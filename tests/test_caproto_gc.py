"""The caproto callback-copy race (devices/caproto_gc.py), reproduced with caproto's own
CallbackHandler, and the guard that the classic beamline is built under."""

from __future__ import annotations

import gc
import types

import pytest
from caproto.threading.client import CallbackHandler

from devices.caproto_gc import collector_paused


class CycleHolder:
    """An owner of a bound-method callback that only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self

    def callback(self, *args, **kwargs) -> None:
        pass


def handler_with_garbage_owners(n: int = 500) -> CallbackHandler:
    """A handler whose n callbacks' owners are unreachable cycles, not yet collected."""
    executor = types.SimpleNamespace(submit=lambda *a, **k: None)
    pv = types.SimpleNamespace(
        circuit_manager=types.SimpleNamespace(user_callback_executor=executor))
    handler = CallbackHandler(pv)
    holders = [CycleHolder() for _ in range(n)]
    for holder in holders:
        handler.add_callback(holder.callback)
    return handler


@pytest.fixture
def collector_state():
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def collect_during_next_copy() -> None:
    """Make the next ~50 container allocations trigger a collection (inside the copy)."""
    gc.set_threshold(gc.get_count()[0] + 50)
    gc.enable()


def test_collection_during_the_copy_breaks_stock_process(collector_state):
    gc.collect()
    gc.disable()
    handler = handler_with_garbage_owners()
    collect_during_next_copy()
    with pytest.raises(RuntimeError, match="dictionary changed size"):
        handler.process("value")


def test_collector_paused_leaves_no_garbage_to_free_mid_copy(collector_state):
    gc.collect()
    gc.disable()
    handler = handler_with_garbage_owners()
    collect_during_next_copy()
    with collector_paused():
        assert not gc.isenabled()
        handler.process("value")  # the stale callbacks are dropped, nothing raises
    assert gc.isenabled()
    assert handler.callbacks == {}


def test_collector_paused_restores_a_disabled_collector(collector_state):
    gc.disable()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert not gc.isenabled()
