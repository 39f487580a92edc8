"""ZeroMQ CURVE for the agent's sockets: key files, and server and client socket set-up.

``beamagent keys DIR`` (``generate_keys``) writes, in pyzmq's certificate format (z85 text):

- ``DIR/server.key`` (public) and ``DIR/server.key_secret`` (the service's key pair);
- ``DIR/client.key`` and ``DIR/client.key_secret`` (a client's key pair);
- ``DIR/authorized_clients/client.key``: the public keys the service accepts.

The service gets ``server.key_secret`` and ``authorized_clients`` (``service.curve`` in the
agent YAML); a client gets ``server.key`` and ``client.key_secret``. Secret files are
created mode 0600. A client without an authorized key gets no connection at all: the
handshake fails, so its messages never reach the service.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from agent.errors import AgentError

SERVER, CLIENT, AUTHORIZED = "server", "client", "authorized_clients"


class KeyFileError(ValueError, AgentError):
    """A key file that is missing or not a CURVE key (names the file)."""


def generate_keys(directory: str | Path, clients: tuple[str, ...] = (CLIENT,),
                  overwrite: bool = False) -> dict[str, Path]:
    """Write a server key pair, one key pair per client, and authorize the clients.

    Refuses to overwrite an existing key (KeyFileError naming it) unless ``overwrite``.
    Returns the paths written by name ("server", "server_secret", "<client>", ...).
    """
    d = Path(directory)
    (d / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    names = (SERVER, *clients)
    if not overwrite:
        for name in names:
            for path in (d / f"{name}.key", d / f"{name}.key_secret"):
                if path.exists():
                    raise KeyFileError(f"{path} exists; not overwritten (use --overwrite to "
                                       "replace the keys, which locks out their holders)")
    written: dict[str, Path] = {}
    for name in names:
        public, secret = zmq.auth.create_certificates(d, name)
        os.chmod(secret, 0o600)
        written[name], written[f"{name}_secret"] = Path(public), Path(secret)
        if name != SERVER:
            written[f"{name}_authorized"] = Path(shutil.copy(public, d / AUTHORIZED))
    return written


def load_pair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a ``*.key_secret`` file. Raises KeyFileError naming it."""
    public, secret = _load(path)
    if not secret:
        raise KeyFileError(f"{path}: has no secret key (give the *.key_secret file)")
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The z85 public key in ``path`` (``*.key`` or ``*.key_secret``)."""
    return _load(path)[0]


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a readable CURVE key file ({exc})") from None


def start_authenticator(ctx: zmq.Context, authorized_clients: str | Path) -> ThreadAuthenticator:
    """A ZAP handler on ``ctx`` accepting CURVE clients whose public key is a ``*.key`` file
    in ``authorized_clients``. Start it before binding; ``stop()`` it before ``ctx.term``."""
    directory = Path(authorized_clients)
    if not any(directory.glob("*.key")):
        raise KeyFileError(f"{directory}: no client public keys (*.key); nobody could connect")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(directory))
    return auth


def secure_server(sock: zmq.Socket, pair: tuple[bytes, bytes]) -> None:
    """Make ``sock`` a CURVE server with the key pair (before bind)."""
    sock.curve_publickey, sock.curve_secretkey = pair
    sock.curve_server = True


def secure_client(sock: zmq.Socket, server_public: bytes, pair: tuple[bytes, bytes]) -> None:
    """Make ``sock`` a CURVE client of the server with ``server_public`` (before connect)."""
    sock.curve_publickey, sock.curve_secretkey = pair
    sock.curve_serverkey = server_public
