"""The agent service: the engine behind ZeroMQ sockets.

Sockets (bound to 127.0.0.1 unless configured otherwise):

- PULL ``measurement_address``: Measurements as JSON or msgpack (reducers PUSH here);
- ROUTER ``request_address``: JSON request envelopes (see ``agent.protocol``), one reply each;
- PUB ``status_address``: ``[b"status", JSON]`` periodically and after each proposal.

One I/O thread owns the sockets; proposals are computed on a worker thread, so the sockets keep
receiving while an ask is in progress (what needs the engine waits until the proposal is
scored: tens of ms). Bad input is rejected with a reason naming the field and
the value, counted in the status, answered with an error envelope if there is a requester, and
the service keeps running. Hostile input is bounded: a message longer than
``max_message_bytes`` or nested deeper than ``agent.messages.MAX_NESTING_DEPTH`` is rejected
unmodelled (libzmq itself drops the connection of a sender whose message exceeds
HARD_MAX_MESSAGE_BYTES). No rejection logs a traceback, and rejections are logged at most
once per ``rejection_log_interval_s`` per socket: the first at once, then one summary line
with the count (``RejectionLog``); every one is counted in the status. Accepted
measurements go to a write-ahead log before they are acknowledged and before the engine
models them (``agent.wal``); a restart rebuilds the engine from it.

Clients are told apart by sessions (``agent.sessions``): each session may hold at most
``max_pending_per_session`` pending points, may release only its own, and an ask it resends
with the same request id gets the proposal already given. The session table (pending points
by session, the last proposal id) is written to the checkpoint directory before each reply
that changes it, so after a kill, SIGKILL included, a restart continues the proposal ids and
keeps unmeasured proposals pending: a point is never proposed while pending or measured.

Each run (or sample) is a *run session* with an engine of its own (``agent.run_sessions``):
a plan sends ``start_session`` with its run's uid and problem (bounds, units, velocities,
value), the engine is built from the config's model settings plus that problem
(``agent.problem``), and the client session is bound to it. A run never uses another
session's measurements unless it names the session to continue. Clients that start no
session use the default run session: the config's own coordinates, as before. ``posterior``
answers a session's posterior mean and std on a coarse grid (computed on the worker).
With ``curve`` configured every socket is a CURVE server and only clients whose public key
is authorized can connect (``agent.curve``); without it the service binds loopback only.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import zmq

from agent import curve
from agent.config import EngineConfig
from agent.engine import Engine
from agent.errors import AgentError, MessageError
from agent.messages import HARD_MAX_MESSAGE_BYTES, Measurement, SessionStarted, decode_measurement
from agent.posterior_grid import posterior_grid
from agent.problem import ModelSettings, as_model_settings
from agent.protocol import (
    AskRequest,
    ConfigRequest,
    OpenRequest,
    PosteriorRequest,
    ReleaseRequest,
    StartSessionRequest,
    StatusRequest,
    TellRequest,
    encode_reply,
    parse_request,
    request_id_of,
)
from agent.run_sessions import RunSession, RunSessionRegistry
from agent.service_config import ServiceConfig, is_loopback
from agent.sessions import ANONYMOUS, Session, SessionError, SessionTable
from agent.wal import MeasurementLog

logger = logging.getLogger(__name__)

# libzmq drops the connection of a peer whose message is longer than HARD_MAX_MESSAGE_BYTES
# (memory guard); shorter ones reach the service, and those above
# ServiceConfig.max_message_bytes are answered with a rejection instead of silence
_POLL_MS = 50


class RejectionLog:
    """Rate-limited logging of rejections, per source (socket).

    The first rejection of a source is logged at once; later ones within ``interval_s`` are
    only counted, and ``flush`` logs one summary line with their count and the last reason
    once the interval is over. So a flood of N bad messages writes a handful of lines.
    """

    def __init__(self, log: logging.Logger, interval_s: float, clock=time.monotonic):
        self._log, self.interval_s, self._clock = log, interval_s, clock
        self._quiet_until: dict[str, float] = {}
        self._pending: dict[str, list] = {}  # source -> [count not logged, last reason]
        self.not_logged = 0

    def reject(self, source: str, reason: str) -> None:
        now = self._clock()
        if source not in self._pending and now >= self._quiet_until.get(source, -math.inf):
            self._log.warning("rejected %s: %s", source, reason)
            self._quiet_until[source] = now + self.interval_s
            return
        pending = self._pending.setdefault(source, [0, ""])
        pending[0] += 1
        pending[1] = reason
        self.not_logged += 1

    def flush(self, force: bool = False) -> None:
        """Log the summary of every source whose interval is over (all if ``force``)."""
        if not self._pending:
            return
        now = self._clock()
        for source in list(self._pending):
            if force or now >= self._quiet_until.get(source, -math.inf):
                count, reason = self._pending.pop(source)
                self._log.warning("rejected %d more %s messages in the last %.1f s; the last: %s",
                                  count, source, self.interval_s, reason)
                self._quiet_until[source] = now + self.interval_s


class AgentService:
    """Serve the engines of the run sessions. ``bind()`` then ``run(stop_event)`` on the
    thread that bound.

    ``engine_config``: the ``engine:`` section, an EngineConfig (a default problem) or
    ModelSettings (``agent.problem``; model settings alone if it names no coordinates)."""

    def __init__(self, engine_config: EngineConfig | ModelSettings,
                 config: ServiceConfig | None = None):
        self.settings = as_model_settings(engine_config)
        self.config = config or ServiceConfig()
        self._log = MeasurementLog(self.config.checkpoint_dir, self.config.fsync) \
            if self.config.checkpoint_dir else None
        self.runs = self._recover()
        self.counters = {"received": 0, "accepted": 0, "rejected": 0, "duplicates": 0,
                         "requests": 0, "proposals": 0, "rejected_requests": 0,
                         "rejected_measurements": 0, "internal_errors": 0, "resent_asks": 0}
        self._tickets = itertools.count(1)
        self.rejections: deque[str] = deque(maxlen=20)
        self.rejection_log = RejectionLog(logger, self.config.rejection_log_interval_s)
        self._started = time.monotonic()
        self._asks: queue.Queue = queue.Queue()
        self._ctx = zmq.Context()
        self._auth = None
        self.addresses: dict[str, str] = {}

    # -- recovery -------------------------------------------------------------------------
    def _recover(self) -> RunSessionRegistry:
        """The run sessions, restored from the checkpoint directory if there is one: each
        logged measurement back in its session, unmeasured proposals pending again, the
        proposal ids continued. The default and the current session's engines are built now
        (hyperparameters retrain in the background), others when first used. Engines get no
        checkpoint_dir: the append-only log is O(1) per measurement and loses nothing."""
        c = self.config
        logged = self._log.read() if self._log else []
        self.recovered = len(logged)
        if logged:
            logger.info("recovering %d measurements from %s", len(logged), self._log.path)
        runs = RunSessionRegistry(
            self.settings, directory=Path(c.checkpoint_dir) if c.checkpoint_dir else None,
            max_pending=c.max_pending_per_session, max_sessions=c.max_sessions,
            require_session=c.require_session, max_loaded=c.max_loaded_sessions, fsync=c.fsync)
        runs.load(logged)
        runs.default.load_table()  # client sessions are opened there
        for session in {runs.default, runs.current_session}:
            if session.config is not None:
                _ = session.engine
        return runs

    @property
    def engine(self) -> Engine:
        """The engine of the current run session (the one last started), else the default."""
        return self.runs.current_session.engine

    @property
    def sessions(self) -> SessionTable:
        """The client sessions (tokens) opened on this service."""
        return self.runs.tokens

    # -- sockets --------------------------------------------------------------------------
    def bind(self) -> dict[str, str]:
        """Bind all sockets; returns the actual addresses (ports resolved if 0).

        Raises AgentError naming the address if asked to bind beyond loopback without CURVE.
        """
        c = self.config
        if c.curve is None and not is_loopback(c.host):
            raise AgentError(f"refusing to bind {c.address(0)} beyond 127.0.0.1 without CURVE "
                             "(set service.curve; `beamagent keys DIR` makes the keys)")
        if c.curve is not None:
            self._pair = curve.load_pair(c.curve.server_secret_key)
            self._auth = curve.start_authenticator(self._ctx, c.curve.authorized_clients)
        self._pull = self._socket(zmq.PULL, c.address(c.measurement_port), "measurement")
        self._router = self._socket(zmq.ROUTER, c.address(c.request_port), "request")
        self._pub = self._socket(zmq.PUB, c.address(c.status_port), "status")
        self._replies = self._ctx.socket(zmq.PULL)  # proposals from the worker thread
        self._replies_address = f"inproc://replies-{id(self)}"
        self._replies.bind(self._replies_address)
        return dict(self.addresses)

    def _socket(self, kind: int, address: str, role: str) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self._auth is not None:
            curve.secure_server(sock, self._pair)
        if kind != zmq.PUB:
            sock.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
        sock.bind(address)
        self.addresses[role] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    # -- main loop ------------------------------------------------------------------------
    def run(self, stop) -> None:
        """Serve until ``stop`` (a threading.Event or agent.signals.StopFlag) is set, then
        shut down cleanly."""
        worker = threading.Thread(target=self._ask_worker, name="agent-ask", daemon=True)
        worker.start()
        poller = zmq.Poller()
        for sock in (self._pull, self._router, self._replies):
            poller.register(sock, zmq.POLLIN)
        next_status = 0.0
        try:
            while not stop.is_set():
                events = dict(poller.poll(_POLL_MS))
                if self._replies in events:
                    self._drain(self._replies, self._forward_reply)
                if self._pull in events:
                    self._drain(self._pull, self._on_measurement)
                if self._router in events:
                    self._drain(self._router, self._on_request)
                self.rejection_log.flush()
                if time.monotonic() >= next_status:
                    self.publish_status()
                    next_status = time.monotonic() + self.config.status_interval_s
        finally:
            self._asks.put(None)
            worker.join(timeout=5)
            self.rejection_log.flush(force=True)
            self._shutdown()

    def _drain(self, sock: zmq.Socket, handler, limit: int = 1000) -> None:
        for _ in range(limit):  # bounded, so one busy socket cannot starve the others
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handler(frames)
            except Exception as exc:  # the service keeps running whatever a message does
                self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> str:
        """A bug met while handling a message: counted; its traceback logged at most once per
        rejection-log interval (a message that triggers it cannot flood the log)."""
        self.counters["internal_errors"] += 1
        now = time.monotonic()
        if now >= getattr(self, "_next_traceback", -math.inf):
            self._next_traceback = now + self.config.rejection_log_interval_s
            logger.error("unexpected error handling a message (%d so far)",
                         self.counters["internal_errors"], exc_info=exc)
        return f"internal error: {type(exc).__name__}"

    def _shutdown(self) -> None:
        self.runs.close()
        if self._log:
            self._log.close()
        if self._auth is not None:
            self._auth.stop()
        self._ctx.destroy(linger=0)

    # -- measurements ---------------------------------------------------------------------
    def _on_measurement(self, frames: list[bytes]) -> None:
        self.counters["received"] += 1
        try:
            measurement = decode_measurement(frames[-1], self.config.max_message_bytes)
            self._ingest(measurement)
        except MessageError as exc:
            self._reject("measurement", str(exc))

    def _ingest(self, measurement: Measurement) -> bool:
        """Validate, log, then tell the engine; True if new. Raises MessageError if rejected.

        Logged before the engine's GP update (milliseconds at large N), so a kill during it
        loses nothing."""
        if self._log and (measurement.run_uid, measurement.seq) in self._log.keys:
            self.counters["duplicates"] += 1
            return False
        run = self.runs.for_measurement(measurement)  # the session of its run
        engine = run.engine
        engine.check(measurement)
        if self._log:
            self._log.append(measurement)
        engine.tell(measurement)
        self.counters["accepted"] += 1
        self._reconcile(run)
        return True

    def _reconcile(self, run: RunSession) -> None:
        """Client sessions drop the pending points the engine no longer holds (measured or
        released)."""
        if any(s.pending for s in run.table.sessions.values()):
            run.table.reconcile(run.engine.pending)

    def _reject(self, source: str, reason: str) -> None:
        """Count a rejection (per source too), keep its reason for the status, and log it
        rate-limited. ``source`` is "request" or "measurement"."""
        self.counters["rejected"] += 1
        self.counters[f"rejected_{source}s"] += 1
        self.rejections.append(f"{source}: {reason}")
        self.rejection_log.reject(source, reason)

    # -- requests -------------------------------------------------------------------------
    def _on_request(self, frames: list[bytes]) -> None:
        self.counters["requests"] += 1
        envelope, payload = frames[:-1], frames[-1]
        limit = self.config.max_message_bytes
        try:
            request = parse_request(payload, limit)
            reply = self._answer(envelope, request)
        except MessageError as exc:
            self._reject("request", str(exc))
            code = {"code": exc.code} if isinstance(exc, SessionError) else {}
            reply = encode_reply("error", request_id_of(payload, limit), error=str(exc), **code)
        except Exception as exc:  # a bug: still answered, so the requester is not left waiting
            reply = encode_reply("error", request_id_of(payload, limit),
                                 error=self._internal_error(exc))
        if reply is not None:
            self._router.send_multipart([*envelope, reply])

    def _answer(self, envelope: list[bytes], request) -> bytes | None:
        rid = request.request_id
        if isinstance(request, OpenRequest):
            self.sessions.open(request.session)
            return encode_reply("ok", rid, session=request.session,
                                max_pending_per_session=self.config.max_pending_per_session)
        session = self.sessions.get(request.session, request.type)
        if isinstance(request, StartSessionRequest):
            return self._start_session(request)
        if isinstance(request, TellRequest):
            new = self._ingest(request.measurement)
            return encode_reply("ok", rid, accepted=True, duplicate=not new)
        if isinstance(request, StatusRequest):
            return encode_reply("status", rid, status=self.status())
        if isinstance(request, ConfigRequest):
            return encode_reply("config", rid, config=self.settings.to_jsonable())
        run = self.runs.for_client(request.session)
        if isinstance(request, PosteriorRequest):
            if request.uid is not None:
                run = self.runs.get(request.uid)
            self._asks.put(("posterior", envelope, run.engine, run.uid, request))
            return None
        if run is not self.runs.default:
            session = run.table.get(request.session, request.type)
        if isinstance(request, AskRequest):
            return self._queue_ask(envelope, run, session, request)
        if isinstance(request, ReleaseRequest):
            return encode_reply("ok", rid, released=self._release(run, session, request.points))
        raise MessageError(f"invalid request: type={type(request).__name__} not handled")

    def _start_session(self, request: StartSessionRequest) -> bytes:
        """Start (or continue) a run session and bind the client session to it; the
        registry is written before the reply. Raises SessionError with the reason."""
        run, continued = self.runs.start(request.session, request.uid, request.problem,
                                         request.continue_session)
        logger.info("run %s %s session %s (%d measurements)", request.uid,
                    "continues" if continued else "starts", run.uid, run.n_measurements())
        started = SessionStarted(uid=run.uid, run_uid=request.uid, continued=continued,
                                 runs=run.runs, n_measurements=run.n_measurements(),
                                 config=run.config.to_jsonable())
        return encode_reply("session", request.request_id,
                            started=started.model_dump(mode="json"))

    def _queue_ask(self, envelope: list[bytes], run: RunSession, session: Session,
                   request: AskRequest) -> bytes | None:
        """Hand an ask to the worker (it answers), unless the session resent it: then the
        proposal already given, or nothing if it is still being computed (that reply comes).
        Raises SessionError if it would exceed the session's quota."""
        rid = request.request_id
        if session.token != ANONYMOUS and rid:  # anonymous clients share request ids
            given = self.sessions.answered(session, rid)
            if given is not None:
                self.counters["resent_asks"] += 1
                return given.encode()
            if rid in session.asking:
                self.counters["resent_asks"] += 1
                return None
        ticket = rid if session.token != ANONYMOUS and rid else -next(self._tickets)
        engine = run.engine  # raises SessionError if there is no problem to ask about
        run.table.reserve(session, ticket, request.n)
        self._asks.put(("ask", envelope, engine, run.uid, session.token, ticket, request))
        return None

    def _release(self, run: RunSession, session: Session, points: list[dict[str, float]]
                 ) -> int:
        """Release those of ``points`` that ``session`` holds; returns how many were pending.
        Raises MessageError naming the coordinate for a point outside the bounds."""
        engine = run.engine
        for p in points:
            engine.space.position(p, what="released point")
        mine = run.table.held_by(session, points)
        released = engine.release(mine) if mine else 0
        self._reconcile(run)
        return released

    def _ask_worker(self) -> None:
        out = self._ctx.socket(zmq.PUSH)
        out.connect(self._replies_address)
        try:
            while (item := self._asks.get()) is not None:
                if item[0] == "posterior":
                    _, envelope, engine, uid, request = item
                    out.send_multipart([b"posterior", self._posterior(engine, uid, request),
                                        *envelope])
                    continue
                _, envelope, engine, uid, token, ticket, request = item
                out.send_multipart([b"ask", *self._propose(engine, request), uid.encode(),
                                    token.encode(), b"%d" % ticket, *envelope])
        finally:
            out.close(linger=0)

    def _posterior(self, engine: Engine, uid: str, request: PosteriorRequest) -> bytes:
        rid = request.request_id
        try:
            grid = posterior_grid(engine, uid, request)
        except MessageError as exc:
            return encode_reply("error", rid, error=str(exc))
        except AgentError as exc:  # no model yet: not bad input
            return encode_reply("error", rid, error=str(exc), code="no_model")
        except Exception as exc:
            logger.exception("posterior failed")
            return encode_reply("error", rid, error=f"engine failure: {exc!r}")
        return encode_reply("posterior", rid, grid=grid.model_dump(mode="json"))

    def _propose(self, engine: Engine, request: AskRequest) -> list[bytes]:
        """[outcome, reply]: outcome is b"ok", b"rejected" (bad request) or b"failed"."""
        rid = request.request_id
        try:
            proposal = engine.ask(request.n, current_position=request.current_position)
        except AgentError as exc:
            return [b"rejected", encode_reply("error", rid, error=str(exc))]
        except Exception as exc:  # an engine bug must not kill the worker
            logger.exception("engine.ask failed")
            return [b"failed", encode_reply("error", rid, error=f"engine failure: {exc!r}")]
        return [b"ok", encode_reply("proposal", rid, proposal=json.loads(proposal.to_json()))]

    def _forward_reply(self, frames: list[bytes]) -> None:
        """Record the proposal in its session (written ahead), then send it. Posterior
        replies go out as they are."""
        if frames[0] == b"posterior":
            self._router.send_multipart([*frames[2:], frames[1]])
            return
        outcome, reply, uid, token, ticket, envelope = (
            frames[1], frames[2], frames[3].decode(), frames[4].decode(), int(frames[5]),
            frames[6:])
        table = self.runs.get(uid).table
        session = table.sessions.get(token)
        if session is None:  # closed meanwhile (table full): the proposal goes to anonymous
            session = table.sessions[ANONYMOUS]
        proposal = json.loads(reply)["proposal"] if outcome == b"ok" else None
        table.record(session, ticket, reply.decode(), proposal)
        if outcome == b"rejected":  # the engine refused the request (e.g. a bad position)
            self._reject("request", json.loads(reply)["error"])
        elif outcome == b"ok":
            self.counters["proposals"] += 1
        self._router.send_multipart([*envelope, reply])
        self.publish_status()

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Engine status plus the service's counters (JSON-able)."""
        current = self.runs.current_session
        engine = current.engine.status() if current.config is not None else \
            {"n_measurements": 0, "n_pending": 0, "training": None}
        return {
            **engine,
            "n_rejected": self.counters["rejected"],
            "run_sessions": self.runs.status(),
            "service": {
                **{f"n_{k}": v for k, v in self.counters.items()},
                "n_recovered": self.recovered,
                "sessions": self.sessions.status(),
                "n_rejections_not_logged": self.rejection_log.not_logged,
                "last_rejections": list(self.rejections),
                "uptime_s": round(time.monotonic() - self._started, 3),
                "addresses": self.addresses,
                "log": str(self._log.path) if self._log else None,
            },
        }

    def publish_status(self) -> None:
        try:
            payload = encode_reply("status", 0, status=self.status())
        except Exception:
            logger.exception("status not published")
            return
        self._pub.send_multipart([b"status", payload])


class ServiceHandle:
    """A service running on a background thread (real sockets on loopback)."""

    def __init__(self, service: AgentService, thread: threading.Thread, stop: threading.Event):
        self.service, self._thread, self._stop = service, thread, stop
        self.request_address = service.addresses["request"]
        self.measurement_address = service.addresses["measurement"]
        self.status_address = service.addresses["status"]

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop, checkpoint, close sockets and the engine. Idempotent."""
        self._stop.set()
        self._thread.join(timeout_s)

    def __enter__(self) -> ServiceHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_in_thread(engine_config: EngineConfig | ModelSettings | str | Path,
                    service_config: ServiceConfig | None = None) -> ServiceHandle:
    """Start the service on a daemon thread; returns once its sockets are bound.

    ``engine_config`` is an EngineConfig, ModelSettings or the path of an agent YAML. Ports
    default to 0
    (free ports, see the handle's addresses).
    """
    if isinstance(engine_config, str | Path):
        from agent.service_config import load_agent_config

        loaded = load_agent_config(engine_config)
        engine_config = loaded.engine
        service_config = service_config or loaded.service.model_copy(
            update={"request_port": 0, "measurement_port": 0, "status_port": 0})
    service_config = service_config or ServiceConfig(request_port=0, measurement_port=0,
                                                     status_port=0)
    service = AgentService(engine_config, service_config)
    stop, ready, failure = threading.Event(), threading.Event(), []

    def main() -> None:
        try:
            service.bind()
        except BaseException as exc:
            failure.append(exc)
            service.runs.close()
            service._ctx.destroy(linger=0)
            ready.set()
            return
        ready.set()
        service.run(stop)

    thread = threading.Thread(target=main, name="agent-service", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    return ServiceHandle(service, thread, stop)
