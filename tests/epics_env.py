"""Loopback-only Channel Access settings (see shared FIELD_NOTES: CA on loopback).

Each pytest process picks one block of ports for its IOCs, so parallel runs never share a
port (two caproto servers on one port split the clients between them).
"""

from __future__ import annotations

import os

from plans.processes import ca_client_environment
from plans.processes import free_port_pair as free_port

__all__ = ["CA_PORT", "client_environment", "free_port"]

# Chosen once per test process; the IOC fixture serves on this port.
CA_PORT = int(os.environ.get("BEAMAGENT_TEST_CA_PORT") or free_port())


def client_environment(port: int = CA_PORT) -> dict[str, str]:
    return {**ca_client_environment(port), "EPICS_CA_SERVER_PORT": str(port)}
