"""Run sessions: one engine per run (or sample), its measurements kept apart from others'.

A plan starts a *run session* at the start of its run (``start_session``: the run's uid and
problem) and its client session (the token of ``agent.sessions``) is bound to it: its asks
and releases go to that session's engine, and measurements go to the run session whose runs
include their ``run_uid``. A run never sees another session's data unless it asks, by
naming the session to continue (``continue_session``): the run is then added to it.

The *default* run session serves the agent config's own problem (its ``coordinates`` and
``value``, if any) to clients that never start a session, and measurements of runs no
session knows: the behaviour of an agent before run sessions existed.

Persistence (with a checkpoint directory): every accepted measurement goes to the one
write-ahead log (``agent.wal``) as before; ``run_sessions.json`` holds each session's
problem and runs, the bindings of client sessions and the current session, and is written
before the reply to each ``start_session``; each session's client table (pending points,
proposal ids, ``agent.sessions``) is ``run_sessions/<uid>.sessions.json``. A restart reads
the log once and hands each measurement to its session; a session's engine is built from its
measurements when first used. At most ``max_loaded`` engines are kept; the least recently
used one holding no pending point is unloaded (its measurements stay, its GP is rebuilt when
used again).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent import checkpoint
from agent.config import ConfigError, EngineConfig
from agent.engine import Engine
from agent.errors import MessageError
from agent.messages import Measurement
from agent.problem import ModelSettings, Problem, ProblemMismatch
from agent.sessions import STATE_NAME, SessionError, SessionTable

logger = logging.getLogger(__name__)

DEFAULT_UID = "default"
REGISTRY_NAME = "run_sessions.json"
REGISTRY_FORMAT = "beamagent.service.run_sessions"
TABLES_DIR = "run_sessions"


class RunSession:
    """One problem's engine, its measurements (``backlog`` until the engine is built) and
    the client table of the client sessions bound to it."""

    def __init__(self, uid: str, config: EngineConfig | None, problem: Problem | None,
                 table: SessionTable, runs: list[str] | None = None,
                 created_at: float | None = None):
        self.uid, self.config, self.problem, self.table = uid, config, problem, table
        self.runs = list(runs or [])
        self.created_at = created_at or time.time()
        self.backlog: list[Measurement] = []
        self.last_used = time.monotonic()
        self._engine: Engine | None = None
        self._table_loaded = False
        self.n_recovered: int | None = None  # measurements the first build recovered

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        """The engine, built from the session's measurements at first use. Raises
        SessionError (code ``no_run_session``) for a default session without a problem."""
        self.last_used = time.monotonic()
        if self._engine is None:
            if self.config is None:
                raise SessionError(
                    "no run session: the agent config names no coordinates, so a run must "
                    "start one (start_session with its problem; gp_scan does)", "no_run_session")
            self._engine = self._build()
        return self._engine

    def _build(self) -> Engine:
        logged, self.backlog = self.backlog, []
        if self.n_recovered is None:
            self.n_recovered = len(logged)
        engine = _engine_from(self.config, logged, self.uid)
        self.load_table()
        held = self.table.all_pending()
        try:
            restored = engine.restore_pending(held, self.table.last_proposal_id)
        except MessageError as exc:  # the bounds changed since: nothing is restored
            logger.warning("session %s: pending proposals not restored: %s", self.uid, exc)
            restored = []
        self.table.reconcile(engine.pending)
        if logged or held:
            logger.info("session %s: %d measurements, %d proposals pending again; proposal "
                        "ids continue after %d", self.uid, len(logged), len(restored),
                        self.table.last_proposal_id)
        return engine

    def load_table(self) -> None:
        """Read the saved client table once (the first build, or at start for the table
        where client sessions are opened)."""
        if not self._table_loaded:
            self._table_loaded = True
            self.table.load()

    def unload(self) -> None:
        """Free the engine (GP, trainer); its measurements wait in the backlog."""
        if self._engine is not None:
            self.backlog = self._engine.measurements
            self._engine.close()
            self._engine = None

    def n_measurements(self) -> int:
        if self._engine is not None:
            return self._engine.status()["n_measurements"]
        return sum(1 for m in self.backlog if m.failure is None)

    def status(self) -> dict[str, Any]:
        """Points, pending, training and the problem, for the service's status."""
        info: dict[str, Any] = {
            "runs": self.runs, "loaded": self.loaded,
            "coordinates": self.problem.names if self.problem else None,
            "value": self.problem.value if self.problem else None,
            "bound_clients": sum(1 for t in self.table.sessions if t),
        }
        if self._engine is None:
            return {**info, "n_measurements": self.n_measurements(), "n_pending":
                    len(self.table.all_pending()), "training": None}
        s = self._engine.status()
        return {**info, "n_measurements": s["n_measurements"], "n_failed": s["n_failed"],
                "n_pending": s["n_pending"], "training": s["training"],
                "acquisition_function": s["acquisition_function"],
                "initial_design": s["initial_design"],
                "last_proposal_id": (s["last_proposal"] or {}).get("proposal_id")}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _engine_from(config: EngineConfig, logged: list[Measurement], uid: str) -> Engine:
    """A fresh engine, or one rebuilt from logged measurements; those that no longer fit the
    config (changed since they were logged) are skipped with a warning."""
    if not logged:
        return Engine(config)
    try:
        return Engine.from_measurements(config, logged)
    except Exception as exc:
        logger.warning("session %s: log does not fit the config (%s); skipping what no "
                       "longer fits", uid, exc)
    engine = Engine(config)
    for m in logged:
        try:
            engine.tell(m)
        except Exception as exc:  # logged before modelled: a restart must not fail on one
            logger.warning("logged measurement %s:%s skipped: %s", m.run_uid, m.seq, exc)
    return engine


class RunSessionRegistry:
    """The run sessions of a service, which run belongs to which, which client session is
    bound to which; persisted in ``directory`` if given."""

    def __init__(self, settings: ModelSettings, *, directory: Path | None, max_pending: int | None,
                 max_sessions: int, require_session: bool, max_loaded: int, fsync: bool = False):
        self.settings, self.directory, self.max_loaded = settings, directory, max_loaded
        self._table_options = dict(max_pending=max_pending, max_sessions=max_sessions,
                                   require_session=require_session, fsync=fsync)
        self.sessions: dict[str, RunSession] = {}
        self.by_run: dict[str, str] = {}  # run uid -> session uid
        self.bindings: dict[str, str] = {}  # client session token -> session uid
        self.current: str | None = None
        default = settings.default
        config = settings.engine_config() if default is not None else None
        table = self._table(default, self._path(STATE_NAME))
        self.default = RunSession(DEFAULT_UID, config, default, table)
        # the default table is also where client sessions are opened (``open``)
        self.tokens = table

    def _path(self, name: str) -> Path | None:
        return self.directory / name if self.directory else None

    def _table(self, problem: Problem | None, path: Path | None) -> SessionTable:
        coords = problem.coordinates if problem else []
        low = np.array([c.low for c in coords], dtype=float)
        span = np.array([c.high - c.low for c in coords], dtype=float)
        return SessionTable([c.name for c in coords], span, low, path=path,
                            **self._table_options)

    def _new(self, uid: str, problem: Problem, runs: list[str], created_at: float | None = None,
             check_default: bool = True) -> RunSession:
        try:
            config = self.settings.engine_config(problem, check_default=check_default)
        except ProblemMismatch as exc:
            raise SessionError(f"start_session refused: {exc}", "problem_mismatch") from None
        except ConfigError as exc:
            raise SessionError(f"start_session refused: {exc}", "invalid_problem") from None
        table = self._table(problem, self._path(f"{TABLES_DIR}/{uid}.{STATE_NAME}"))
        session = self.sessions[uid] = RunSession(uid, config, problem, table, runs, created_at)
        for run in runs:
            self.by_run[run] = uid
        return session

    # -- lookup ---------------------------------------------------------------------------
    def get(self, uid: str | None) -> RunSession:
        """The session ``uid`` (None or "default": the default one). Raises SessionError."""
        if uid in (None, DEFAULT_UID):
            return self.default
        session = self.sessions.get(uid)
        if session is None:
            raise SessionError(f"no run session {uid!r} on this agent (it has "
                               f"{self._known()})", "no_run_session")
        return self._touch(session)

    def for_client(self, token: str | None) -> RunSession:
        """The session a client session's asks and releases go to."""
        uid = self.bindings.get(token) if token else None
        session = self.sessions.get(uid) if uid else None
        if session is None:
            return self.default
        if token not in session.table.sessions:
            session.table.open(token)
        return self._touch(session)

    def for_measurement(self, m: Measurement) -> RunSession:
        """The session of ``m``'s run; runs no session knows go to the default one. Raises
        MessageError if there is no default problem."""
        uid = self.by_run.get(m.run_uid)
        if uid is not None:
            return self._touch(self.sessions[uid])
        if self.default.config is None:
            raise MessageError(f"measurement {m.run_uid}:{m.seq}: run {m.run_uid!r} belongs "
                               "to no run session and the agent config names no default "
                               "problem (a plan starts its session with start_session)")
        return self.default

    def _known(self) -> str:
        uids = list(self.sessions)
        if not uids:
            return "none"
        return f"{len(uids)}: " + ", ".join(uids[-5:]) + (" ..." if len(uids) > 5 else "")

    def _touch(self, session: RunSession) -> RunSession:
        """Mark used; keep at most max_loaded engines (unload the LRU idle one)."""
        session.last_used = time.monotonic()
        loaded = [s for s in self.sessions.values() if s.loaded and s is not session]
        if len(loaded) >= self.max_loaded:
            idle = [s for s in loaded if not any(c.held for c in s.table.sessions.values())]
            if idle:
                victim = min(idle, key=lambda s: s.last_used)
                logger.info("unloading run session %s (%d engines loaded, the limit "
                            "service.max_loaded_sessions=%d)", victim.uid, len(loaded) + 1,
                            self.max_loaded)
                victim.unload()
        return session

    # -- start ----------------------------------------------------------------------------
    def start(self, token: str, uid: str, problem: Problem, continue_session: str | None
              ) -> tuple[RunSession, bool]:
        """Start run session ``uid`` (or continue ``continue_session`` with run ``uid``) and
        bind ``token`` to it; written before returning. Returns (session, continued).
        Raises SessionError naming the session, the field and both values."""
        if continue_session is not None:
            session = self.get(continue_session)
            if session is self.default:
                raise SessionError("start_session refused: continue_session='default' (the "
                                   "default session is used by naming no session)",
                                   "no_run_session")
            owner = self.by_run.get(uid)
            if owner not in (None, session.uid):
                raise SessionError(f"start_session refused: run {uid!r} already belongs to "
                                   f"session {owner!r}", "problem_mismatch")
            self._check(problem, session)
            if uid not in session.runs:
                session.runs.append(uid)
                self.by_run[uid] = session.uid
        else:
            owner = self.by_run.get(uid)
            if owner is not None and owner != uid:
                raise SessionError(f"start_session refused: run {uid!r} already continues "
                                   f"session {owner!r}", "problem_mismatch")
            session = self.sessions.get(uid)
            if session is not None:  # the same request again (a resend, a resumed plan)
                self._check(problem, session)
            else:
                session = self._new(uid, problem, [uid])
        self.bindings[token] = session.uid
        self.current = session.uid
        session.table.open(token)
        self.save()
        return self._touch(session), continue_session is not None

    @staticmethod
    def _check(problem: Problem, session: RunSession) -> None:
        try:
            problem.check_same(session.problem, f"session {session.uid}")
        except ProblemMismatch as exc:
            raise SessionError(f"start_session refused: {exc}", "problem_mismatch") from None

    @property
    def current_session(self) -> RunSession:
        """The session most recently started or continued, else the default one."""
        return self.sessions.get(self.current or "", self.default)

    # -- persistence ----------------------------------------------------------------------
    def save(self) -> None:
        path = self._path(REGISTRY_NAME)
        if path is None:
            return
        state = {"state": REGISTRY_FORMAT, "current": self.current, "bindings": self.bindings,
                 "sessions": {uid: {"problem": s.problem.model_dump(mode="json"),
                                    "runs": s.runs, "created_at": s.created_at}
                              for uid, s in self.sessions.items()}}
        checkpoint.write_atomic(path, state, fsync=self._table_options["fsync"])

    def load(self, logged: list[Measurement]) -> None:
        """Restore the sessions saved, then hand each logged measurement to its session."""
        path = self._path(REGISTRY_NAME)
        if path is not None and path.exists():
            try:
                state = checkpoint.read(path)
                if state.get("state") != REGISTRY_FORMAT:
                    raise checkpoint.CheckpointError(f"{path}: not a run-session registry")
                for uid, s in state["sessions"].items():
                    self._new(uid, Problem.model_validate(s["problem"]), list(s["runs"]),
                              float(s["created_at"]), check_default=False)
                self.bindings = {t: u for t, u in state["bindings"].items()
                                 if u in self.sessions}
                self.current = state.get("current")
            except (checkpoint.CheckpointError, SessionError, KeyError, TypeError,
                    ValueError) as exc:
                logger.warning("run-session registry %s ignored: %s", path, exc)
        for m in logged:
            try:
                self.for_measurement(m).backlog.append(m)
            except MessageError as exc:
                logger.warning("logged measurement skipped: %s", exc)
        if self.sessions:
            logger.info("restored %d run sessions (current: %s)", len(self.sessions),
                        self.current)

    def status(self) -> dict[str, Any]:
        sessions = {uid: s.status() for uid, s in self.sessions.items()}
        if self.default.config is not None:
            sessions = {DEFAULT_UID: self.default.status(), **sessions}
        return {"current": self.current_session.uid, "n_sessions": len(self.sessions),
                "max_loaded": self.max_loaded, "sessions": sessions}

    def close(self) -> None:
        self.default.close()
        for s in self.sessions.values():
            s.close()
