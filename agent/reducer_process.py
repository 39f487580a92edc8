"""Reducers in their own process, fed by bluesky's zmq Proxy with msgpack (never pickle).

    beamagent-side:  RE.subscribe(Publisher("127.0.0.1:5577", serializer=doc_codec.dumps))
    proxy:           bluesky-0MQ-proxy, or bluesky.callbacks.zmq.Proxy("tcp://127.0.0.1:5577",
                     "tcp://127.0.0.1:5578").start()
    reducers:        python -m agent.reducers --config configs/agent.yaml \
                         --proxy tcp://127.0.0.1:5578 [--acknowledged tcp://127.0.0.1:5580]
                         [--push [--agent tcp://127.0.0.1:5581]]
                         [--server-key keys/server.key --client-key keys/client.key_secret]

By default measurements go as acknowledged, resent ``tell``s to the service's request
socket (``agent.delivery``; the ``request_port`` of the config's ``service:`` section, or
``--acknowledged REQUEST_ADDRESS``): exactly once across agent restarts. ``--push`` (or
``--agent MEASUREMENT_ADDRESS``) PUSHes them instead, fire-and-forget, for high-rate data: a
kill of the agent loses what was in flight. The CURVE keys (either way) are those of
``beamagent keys`` for a service with ``service.curve``.

The subscriber here reads the Publisher's framing (``prefix name payload``) itself rather than
through ``RemoteDispatcher``: there an unknown document name raises KeyError inside its poll
task and ends the dispatcher, so one stray message would stop all reduction. Here a bad message
is logged, counted and skipped.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable, Iterable

import zmq
from event_model import DocumentNames

from agent import doc_codec
from agent.delivery import MeasurementSender
from agent.reducers import ImageReducer, Reducer, ScalarReducer
from agent.service_config import ImageReducerConfig, ReducerConfig, load_agent_config
from agent.signals import StopFlag

logger = logging.getLogger("agent.reducers")


def build_reducers(configs: Iterable[ReducerConfig], address: str | None,
                   encoding: str = "msgpack", sink: Callable | None = None,
                   **keys) -> list[Reducer]:
    """Reducers from the ``reducers:`` section, each PUSHing to ``address`` (with CURVE
    ``keys``: server_key, client_key), or handing its measurements to ``sink`` (e.g. one
    ``agent.delivery.MeasurementSender`` shared by all) if given."""
    reducers: list[Reducer] = []
    for c in configs:
        where = dict(sink=sink) if sink is not None else dict(address=address,
                                                              encoding=encoding, **keys)
        common = dict(positions=c.positions, counting_statistics=c.counting_statistics, **where)
        if isinstance(c, ImageReducerConfig):
            reducers.append(ImageReducer(c.image, roi=c.roi, value_prefix=c.value_prefix,
                                         **common))
        else:
            reducers.append(ScalarReducer(c.value_name, c.detector, c.monitor, **common))
    return reducers


class DocumentSubscriber:
    """SUB socket on a bluesky zmq Proxy's out address; routes decoded documents to callbacks."""

    def __init__(self, address: str, callbacks: list[Callable], prefix: bytes = b""):
        self.address, self.callbacks, self.prefix = address, callbacks, prefix
        self.n_documents = self.n_bad = 0
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(address)

    def run(self, stop: threading.Event | StopFlag) -> None:
        """Route documents until ``stop`` is set."""
        try:
            while not stop.is_set():
                if self._socket.poll(100):
                    self.handle(self._socket.recv())
        finally:
            self._socket.close()
            self._ctx.term()

    def handle(self, message: bytes) -> None:
        try:
            prefix, name, payload = message.split(b" ", 2)
            name = DocumentNames[name.decode()].name
            doc = doc_codec.loads(payload)
        except Exception as exc:  # any bad message is skipped, never fatal
            self.n_bad += 1
            logger.error("bad document message skipped (%d bytes): %s", len(message), exc)
            return
        if self.prefix and prefix != self.prefix:
            return
        self.n_documents += 1
        if name == "start":
            logger.info("run start uid=%s", doc.get("uid"))
        for callback in self.callbacks:
            try:
                callback(name, doc)
            except Exception:
                logger.exception("reducer %r failed on a %s document", callback, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="agent YAML with a reducers: section")
    parser.add_argument("--proxy", required=True,
                        help="out address of the bluesky zmq Proxy, e.g. tcp://127.0.0.1:5578")
    parser.add_argument("--acknowledged", default=None, metavar="REQUEST_ADDRESS",
                        help="the service's request address for acknowledged delivery, the "
                             "default (exactly once across agent restarts; default address: "
                             "request_port of the service: section)")
    parser.add_argument("--push", action="store_true",
                        help="PUSH to the service's measurement address instead: "
                             "fire-and-forget, for high-rate data (a kill loses what is in "
                             "flight)")
    parser.add_argument("--agent", default=None, metavar="MEASUREMENT_ADDRESS",
                        help="PUSH to this measurement address (implies --push; default: "
                             "measurement_port of the service: section)")
    parser.add_argument("--encoding", choices=["msgpack", "json"], default="msgpack",
                        help="PUSH encoding")
    parser.add_argument("--server-key", default=None, help="CURVE: the service's server.key")
    parser.add_argument("--client-key", default=None,
                        help="CURVE: this client's client.key_secret")
    parser.add_argument("--log-level", default="INFO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.reducers", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    config = load_agent_config(args.config)
    if not config.reducers:
        parser.error(f"{args.config} has no reducers: section")
    service = config.service
    push = args.push or args.agent is not None
    if push and args.acknowledged:
        parser.error("--acknowledged and --push/--agent: choose one delivery")
    if (args.server_key is None) != (args.client_key is None):
        parser.error("CURVE needs both --server-key and --client-key")
    keys = dict(server_key=args.server_key, client_key=args.client_key)
    sender = None
    if push:
        address = args.agent or f"tcp://127.0.0.1:{service.measurement_port}"
        reducers = build_reducers(config.reducers, address, args.encoding, **keys)
    else:
        address = args.acknowledged or f"tcp://127.0.0.1:{service.request_port}"
        sender = MeasurementSender(address, **keys)  # one, shared by every reducer
        reducers = build_reducers(config.reducers, None, sink=sender)
    stop = StopFlag().install()  # re-entrant safe: a burst of SIGTERMs cannot deadlock
    subscriber = DocumentSubscriber(args.proxy, reducers)
    logger.info("reducing documents from %s into %s (%s)", args.proxy, address,
                "PUSH" if push else "acknowledged")
    try:
        subscriber.run(stop)
    finally:
        for reducer in reducers:
            reducer.close()
        if sender is not None:
            sender.close()
        logger.info("stopped: %d documents, %d bad, %d measurements sent", subscriber.n_documents,
                    subscriber.n_bad, sum(r.n_sent for r in reducers))
    return 0
