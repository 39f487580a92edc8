"""Shared test setup.

libca reads the EPICS environment once per process, at first connect, so the loopback
settings are made here at import time, before any test imports a CA client.
"""

import os

import pytest

from tests.epics_env import client_environment

os.environ.update(client_environment())
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
pytest_plugins = ["tests.ioc_fixture"]


@pytest.fixture
def RE():
    """A RunEngine for one test, aborted if the test left it paused. Modules connecting
    ophyd-async devices once override it with a module-scoped one (created before the
    devices connect, FIELD_NOTES)."""
    from bluesky import RunEngine

    engine = RunEngine(call_returns_result=True)
    yield engine
    if engine.state != "idle":
        engine.abort()
