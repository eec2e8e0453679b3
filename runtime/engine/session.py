"""Streaming sessions (SGLang's ``--enable-streaming-session``): KV pinned across turns.

A session holds a lock on the radix node covering every token of its last finished turn that
has KV (prompt + output minus the final sampled token, which is fed at the start of the next
turn). Turns are append-only: the next request sends only new ids; the server prepends the
session's ids. The lock is dropped by ``/close_session``, by ``timeout`` seconds of inactivity,
or never before: the client must bound how much it pins (interleaf's retention layer does).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from interleaf.runtime.engine.protocol import BadRequest
from interleaf.runtime.engine.radix_cache import Node, RadixCache
from interleaf.runtime.engine.request import Req, SamplingParams


@dataclass(eq=False)
class Session:
    """One open streaming session."""

    id: str
    timeout: float | None
    """Seconds of inactivity after which the session closes itself (None: until ``/close_session``)."""
    node: Node | None = None
    """Locked radix node covering ``kv_ids``."""
    kv_ids: list[int] = field(default_factory=list)
    """Ids whose KV the session pins, in order."""
    pending_ids: list[int] = field(default_factory=list)
    """Ids of the last turn without KV yet (its final sampled token)."""
    last_rid: str | None = None
    """Request id of the last finished turn (a turn's ``session_params.rid`` must match it)."""
    inflight: Req | None = None
    """The turn being served; at most one at a time."""
    last_active: float = field(default_factory=time.monotonic)
    closed: bool = False

    @property
    def held_tokens(self) -> int:
        return len(self.kv_ids)

    @property
    def context_ids(self) -> list[int]:
        """Everything the next turn's new ids are appended to."""
        return self.kv_ids + self.pending_ids

    def expired(self, now: float) -> bool:
        return self.timeout is not None and self.inflight is None and now - self.last_active > self.timeout

    def check_turn(self, rid: str | None, delta: list[int]) -> None:
        """Raise ``BadRequest`` naming the field when a turn following ``rid`` with ``delta`` cannot start."""
        if self.inflight is not None:
            raise BadRequest(f"session_params.id: session {self.id!r} already has a request in flight "
                             f"({self.inflight.rid}); wait for it to finish", "session_params.id")  # fmt: skip
        if rid is not None and self.last_rid is not None and rid != self.last_rid:
            raise BadRequest(f"session_params.rid={rid!r} is not the session's last finished request "
                             f"{self.last_rid!r}", "session_params.rid")  # fmt: skip
        if not self.context_ids and not delta:
            raise BadRequest("input_ids: the first turn of a session needs at least one token", "input_ids")


class SessionTable:
    """The open sessions, by id, and the lock that guards them.

    HTTP handlers open sessions and start turns; the scheduler thread finishes, rolls back, expires
    and closes them, and only it moves the sessions' radix locks. Every read or write of a session's
    fields goes through this table, under its lock.
    """

    def __init__(self, radix: RadixCache):
        self._radix = radix
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def held_tokens(self) -> int:
        """Tokens pinned by open sessions; sessions sharing a prefix count it once each (an upper bound)."""
        with self._lock:
            return sum(s.held_tokens for s in self._sessions.values() if not s.closed)

    # --- HTTP handlers ----------------------------------------------------------------------------
    def open(self, sid: str, timeout: float | None) -> None:
        """Open session ``sid``; ``BadRequest`` if it is open already."""
        with self._lock:
            if sid in self._sessions:
                raise BadRequest(f"session_id {sid!r} is already open", "session_id")
            self._sessions[sid] = Session(id=sid, timeout=timeout)

    def begin_turn(self, sid: str, rid: str, after_rid: str | None, delta: list[int]) -> list[int]:
        """Reserve session ``sid`` for turn ``rid`` (following ``after_rid`` when given) and return its full
        prompt: the session's ids + ``delta``. ``BadRequest`` naming the field when the turn cannot start.
        Follow with ``attach`` once the request is built, or ``release`` if building it fails."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.closed:
                raise BadRequest(f"session_params.id: unknown or closed session {sid!r}; open one with "
                                 "/open_session", "session_params.id")  # fmt: skip
            s.check_turn(after_rid, delta)
            s.inflight = Req(rid=rid, input_ids=[], params=SamplingParams())  # placeholder until built
            s.last_active = time.monotonic()
            return s.context_ids + delta

    def attach(self, sid: str, req: Req) -> None:
        """The turn reserved by ``begin_turn`` is ``req``."""
        with self._lock:
            self._sessions[sid].inflight = req

    def release(self, sid: str) -> None:
        """Drop the turn reserved by ``begin_turn`` (the request was rejected before it ran)."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None:
                s.inflight = None

    # --- scheduler thread -------------------------------------------------------------------------
    def expired(self, now: float) -> list[str]:
        """Ids of the sessions whose inactivity timeout has passed."""
        with self._lock:
            return [s.id for s in self._sessions.values() if s.expired(now)]

    def finish_turn(self, req: Req, node: Node, ids_with_kv: list[int]) -> None:
        """``req`` finished: its session now pins ``node`` (covering ``ids_with_kv``) instead of the old one."""
        with self._lock:
            s = self._sessions.get(req.session_id or "")
            if s is None or s.closed:
                return
            self._radix.lock(node)
            if s.node is not None:
                self._radix.unlock(s.node)
            s.node = node
            s.kv_ids = ids_with_kv
            s.pending_ids = req.seq_ids[len(ids_with_kv) :]
            s.last_rid = req.rid
            s.inflight = None
            s.last_active = time.monotonic()

    def roll_back(self, req: Req) -> None:
        """``req`` was aborted: its session stays at its last finished turn."""
        with self._lock:
            s = self._sessions.get(req.session_id or "")
            if s is not None and s.inflight is req:
                s.inflight = None
                s.last_active = time.monotonic()

    def close(self, sid: str) -> Session | None:
        """Remove session ``sid`` and drop its pin; returns it (its ``inflight`` turn is the caller's to
        abort), or None when no such session was open."""
        with self._lock:
            s = self._sessions.pop(sid, None)
        if s is None:
            return None
        s.closed = True
        if s.node is not None:
            self._radix.unlock(s.node)
            s.node = None
        return s
