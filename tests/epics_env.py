"""Loopback-only Channel Access settings (see shared FIELD_NOTES: CA on loopback).

Each pytest process picks one block of ports for its IOCs, so parallel runs never share a
port (two caproto servers on one port split the clients between them).
"""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now and whose successor is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and _udp_free(port) and _udp_free(port + 1):
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Chosen once per test process; the IOC fixture serves on this port.
CA_PORT = int(os.environ.get("BEAMAGENT_TEST_CA_PORT") or free_port())


def client_environment(port: int = CA_PORT) -> dict[str, str]:
    return {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        "EPICS_CA_SERVER_PORT": str(port),
    }
