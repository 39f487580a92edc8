"""Reducers in their own process, fed by bluesky's zmq Proxy with msgpack (never pickle).

    beamagent-side:  RE.subscribe(Publisher("127.0.0.1:5577", serializer=doc_codec.dumps))
    proxy:           bluesky-0MQ-proxy, or bluesky.callbacks.zmq.Proxy("tcp://127.0.0.1:5577",
                     "tcp://127.0.0.1:5578").start()
    reducers:        python -m agent.reducers --config configs/agent.yaml \
                         --proxy tcp://127.0.0.1:5578 [--agent tcp://127.0.0.1:5581]
                         [--acknowledged tcp://127.0.0.1:5580]
                         [--server-key keys/server.key --client-key keys/client.key_secret]

``--acknowledged REQUEST_ADDRESS`` delivers measurements as acknowledged, resent ``tell``s to
the service's request socket (``agent.delivery``): exactly once across agent restarts,
where PUSH loses what was in flight at a kill. The CURVE keys are those of
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
from agent.reducers import ImageReducer, Reducer, ScalarReducer
from agent.service_config import ImageReducerConfig, ReducerConfig, load_agent_config
from agent.signals import StopFlag

logger = logging.getLogger("agent.reducers")


def build_reducers(configs: Iterable[ReducerConfig], address: str | None,
                   encoding: str = "msgpack", sink: Callable | None = None) -> list[Reducer]:
    """Reducers from the ``reducers:`` section, each PUSHing to ``address``, or handing its
    measurements to ``sink`` (e.g. an ``agent.delivery.MeasurementSender``) if given."""
    reducers: list[Reducer] = []
    for c in configs:
        where = dict(sink=sink) if sink is not None else dict(address=address,
                                                              encoding=encoding)
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
    parser.add_argument("--agent", default=None,
                        help="service measurement address (default: from the service: section)")
    parser.add_argument("--encoding", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--acknowledged", default=None, metavar="REQUEST_ADDRESS",
                        help="deliver as acknowledged tells to the service's request address "
                             "(exactly once across agent restarts) instead of PUSH")
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
    address = args.agent or f"tcp://127.0.0.1:{service.measurement_port}"
    sender = None
    if args.acknowledged:
        from agent.delivery import MeasurementSender

        sender = MeasurementSender(args.acknowledged, server_key=args.server_key,
                                   client_key=args.client_key)
        address = args.acknowledged
    elif args.server_key or args.client_key:
        parser.error("--server-key/--client-key go with --acknowledged (PUSH has no CURVE "
                     "client here)")
    reducers = build_reducers(config.reducers, address, args.encoding, sink=sender)
    stop = StopFlag().install()  # re-entrant safe: a burst of SIGTERMs cannot deadlock
    subscriber = DocumentSubscriber(args.proxy, reducers)
    logger.info("reducing documents from %s into %s", args.proxy, address)
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
