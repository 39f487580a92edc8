"""Client sessions of the agent service: who holds which pending proposal, persisted.

How clients are identified: the ROUTER socket's routing id names a *connection*, not a
client (it changes on every reconnect, so after an agent restart), and requests carried no
identity at all. So a client opens a session: ``{"type": "open", "session": TOKEN}`` with a
token of its own choosing (``AgentClient`` draws 128 random bits), and names it in every
later request (``"session": TOKEN``). A request naming a session that was not opened is
rejected with a reason (code ``session_not_opened``). Requests naming no session belong to
the one shared *anonymous* session (unless the service requires sessions). The token is a
bearer secret: the status shows only its first 8 characters, and with CURVE on nobody
without a client key can reach the sockets to learn or use one.

Per session the table keeps the proposals handed out and not yet measured or released, and
the last ask answered. A session may hold at most ``max_pending`` pending points (asks in
progress included), so one client cannot reserve the whole space. An ask resent with the
same request id (a client retrying across a restart or a lost reply) is answered with the
proposal already given, never a second one: each proposal is handed out exactly once.

With a ``path`` the table is written atomically after every change (before the reply that
depends on it goes out), with the last proposal id, so a restarted service continues the ids
and restores what is pending (``agent.engine.Engine.restore_pending``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent import checkpoint
from agent.errors import MessageError

logger = logging.getLogger(__name__)

ANONYMOUS = ""  # the session of requests that name none
STATE_FORMAT = "beamagent.service.sessions"
STATE_NAME = "sessions.json"
SAME_POINT = 1e-9  # unit-cube distance under which two points are the same proposal


class SessionError(MessageError):
    """A request naming a session that was not opened, or a session refused (quota, table
    full). ``code`` is sent with the error reply so that clients can tell them apart."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass
class Session:
    token: str
    opened_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    pending: list[dict[str, Any]] = field(default_factory=list)  # {"proposal_id", "point"}
    last_ask: dict[str, Any] | None = None  # {"request_id", "reply"} (reply: JSON text)
    asking: dict[int, int] = field(default_factory=dict)  # request_id -> n, in progress

    @property
    def label(self) -> str:
        return "anonymous" if self.token == ANONYMOUS else self.token[:8]

    @property
    def held(self) -> int:
        return len(self.pending) + sum(self.asking.values())

    def to_json(self) -> dict[str, Any]:
        return {"opened_at": self.opened_at, "pending": self.pending, "last_ask": self.last_ask}


class SessionTable:
    """Open sessions, their pending proposals and the proposal-id high-water mark."""

    def __init__(self, names: list[str], span: np.ndarray, low: np.ndarray, *,
                 max_pending: int | None, max_sessions: int, require_session: bool,
                 path: Path | None = None, fsync: bool = False):
        self.names, self._span, self._low = list(names), span, low
        self.max_pending, self.max_sessions = max_pending, max_sessions
        self.require_session = require_session
        self.path, self._fsync = path, fsync
        self.last_proposal_id = 0
        self.sessions: dict[str, Session] = {ANONYMOUS: Session(ANONYMOUS)}

    # -- lookup ---------------------------------------------------------------------------
    def open(self, token: str) -> Session:
        """Open ``token`` (idempotent). When the table is full the least recently used
        session holding nothing is closed; if all hold proposals, SessionError."""
        session = self.sessions.get(token)
        if session is None:
            named = [s for s in self.sessions.values() if s.token != ANONYMOUS]
            if len(named) >= self.max_sessions:
                idle = [s for s in named if s.held == 0]
                if not idle:
                    raise SessionError(
                        f"open refused: {len(named)} sessions are open, the limit "
                        f"service.max_sessions={self.max_sessions}, and all hold pending "
                        "proposals", "sessions_full")
                del self.sessions[min(idle, key=lambda s: s.last_used).token]
            session = self.sessions[token] = Session(token)
            self.save()
        session.last_used = time.monotonic()
        return session

    def get(self, token: str | None, kind: str) -> Session:
        """The session a ``kind`` request names. Raises SessionError if it was not opened,
        or if it names none and sessions are required."""
        if token is None:
            if self.require_session and kind in ("ask", "tell", "release"):
                raise SessionError(
                    f"{kind} refused: no session given and service.require_session is true "
                    "(send an 'open' request first and name its session)", "session_required")
            token = ANONYMOUS
        session = self.sessions.get(token)
        if session is None:
            raise SessionError(
                f"{kind} refused: session {token[:8]!r}... was not opened (send "
                "{\"type\": \"open\", \"session\": ...} first)", "session_not_opened")
        session.last_used = time.monotonic()
        return session

    # -- asks -----------------------------------------------------------------------------
    def reserve(self, session: Session, request_id: int, n: int) -> None:
        """Count an ask of ``n`` points against the session's quota. Raises SessionError
        naming the session, the request and the limit if it would exceed it."""
        if self.max_pending is not None and session.held + n > self.max_pending:
            raise SessionError(
                f"ask n={n} refused: session {session.label} holds {len(session.pending)} "
                f"pending points and asks for {sum(session.asking.values())} more, and "
                f"{session.held + n} would exceed service.max_pending_per_session="
                f"{self.max_pending}; measure or release some first", "quota")
        session.asking[request_id] = n

    @staticmethod
    def answered(session: Session, request_id: int) -> str | None:
        """The reply already given to this ask (a resend), else None."""
        last = session.last_ask
        if request_id and last is not None and last["request_id"] == request_id:
            return last["reply"]
        return None

    def record(self, session: Session, request_id: int, reply: str,
               proposal: dict[str, Any] | None) -> None:
        """An ask answered: its points become the session's, written before the reply goes."""
        session.asking.pop(request_id, None)
        if proposal is not None:
            self.last_proposal_id = max(self.last_proposal_id, int(proposal["proposal_id"]))
            session.pending += [{"proposal_id": proposal["proposal_id"], "point": p}
                                for p in proposal["points"]]
            if request_id > 0:  # a client's own request id (anonymous asks get tickets < 0)
                session.last_ask = {"request_id": request_id, "reply": reply}
        self.save()

    # -- pending --------------------------------------------------------------------------
    def held_by(self, session: Session, points: list[dict[str, float]]) -> list[dict[str, float]]:
        """Those of ``points`` that ``session`` holds (others' points are not its to release)."""
        if not session.pending or not points:
            return []
        mine = self._unit([h["point"] for h in session.pending])
        return [p for p, u in zip(points, self._unit(points), strict=True)
                if np.min(np.max(np.abs(mine - u), axis=1)) <= SAME_POINT]

    def reconcile(self, engine_pending: list[dict[str, float]]) -> bool:
        """Drop what the engine no longer holds pending (measured or released); True if any."""
        left = self._unit(engine_pending) if engine_pending else np.empty((0, len(self.names)))
        changed = False
        for session in self.sessions.values():
            keep = []
            for held in session.pending:
                u = self._unit([held["point"]])[0]
                if len(left) and np.min(np.max(np.abs(left - u), axis=1)) <= SAME_POINT:
                    keep.append(held)
            changed |= len(keep) != len(session.pending)
            session.pending = keep
        if changed:
            self.save()
        return changed

    def all_pending(self) -> list[dict[str, float]]:
        return [h["point"] for s in self.sessions.values() for h in s.pending]

    def _unit(self, points: list[dict[str, float]]) -> np.ndarray:
        x = np.array([[float(p[n]) for n in self.names] for p in points], dtype=float)
        return (x - self._low) / self._span

    # -- persistence ----------------------------------------------------------------------
    def save(self) -> None:
        if self.path is None:
            return
        state = {"state": STATE_FORMAT, "last_proposal_id": self.last_proposal_id,
                 "sessions": {t: s.to_json() for t, s in self.sessions.items()}}
        checkpoint.write_atomic(self.path, state, fsync=self._fsync)

    def load(self) -> bool:
        """Read the saved table, if any; False if there is none. An unreadable file is
        logged and ignored (the service then starts with no sessions)."""
        if self.path is None or not self.path.exists():
            return False
        try:
            state = checkpoint.read(self.path)
            if state.get("state") != STATE_FORMAT:
                raise checkpoint.CheckpointError(f"{self.path}: not a session table")
            self.last_proposal_id = int(state["last_proposal_id"])
            for token, s in state["sessions"].items():
                self.sessions[token] = Session(token, opened_at=float(s["opened_at"]),
                                               pending=list(s["pending"]),
                                               last_ask=s.get("last_ask"))
        except (checkpoint.CheckpointError, KeyError, TypeError, ValueError) as exc:
            logger.warning("session table %s ignored: %s", self.path, exc)
            return False
        return True

    def status(self) -> dict[str, Any]:
        return {"n_open": len(self.sessions) - 1, "max_sessions": self.max_sessions,
                "max_pending_per_session": self.max_pending,
                "require_session": self.require_session,
                "last_proposal_id": self.last_proposal_id,
                "pending": {s.label: len(s.pending) for s in self.sessions.values()
                            if s.pending}}
