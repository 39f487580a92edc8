"""Shared test setup.

libca reads the EPICS environment once per process, at first connect, so the loopback
settings are made here at import time, before any test imports a CA client.
"""

import os

from tests.epics_env import client_environment

os.environ.update(client_environment())
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
pytest_plugins = ["tests.ioc_fixture"]
