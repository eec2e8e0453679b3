"""Sessions: streaming ones (SGLang's ``--enable-streaming-session``), whose KV is pinned across
turns, and plain ones, which only keep each request's ids so that a later request can continue it.

A streaming session holds a lock on the radix node covering every token of its last finished turn that
has KV (prompt + output minus the final sampled token, which is fed at the start of the next
turn). Turns are append-only: the next request sends only new ids; the server prepends the
session's ids. The lock is dropped by ``/close_session``, by ``timeout`` seconds of inactivity,
or never before: the client must bound how much it pins (interleaf's retention layer does).

A plain session (``/open_session`` without ``"streaming": true``, as SGLang's frontend opens them)
pins nothing: each request is a node of a tree by ``rid``; a request naming ``session_params.rid``
continues that finished request's prompt + output (cut at ``offset``, without the output with
``drop_previous_output``; ``replace`` first drops the named request's children, or every node when
no ``rid`` is given), several may be in flight at once, and the radix cache does the reuse.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from interleaf.runtime.engine.protocol import BadRequest, SessionParamsIn
from interleaf.runtime.engine.radix_cache import Node, RadixCache
from interleaf.runtime.engine.request import Req, SamplingParams


@dataclass(eq=False)
class PlainTurn:
    """One request of a plain session: a node of the session's tree."""

    req: Req
    """The request (its ids stay readable after it finishes)."""
    parent: str | None
    """``rid`` of the request it continues (None: a root)."""
    children: list[str] = field(default_factory=list)
    """``rid``s of the requests continuing it."""


@dataclass(eq=False)
class Session:
    """One open session: streaming (KV pinned, append-only) or plain (a tree of requests, nothing pinned)."""

    id: str
    timeout: float | None
    """Seconds of inactivity after which the session closes itself (None: until ``/close_session``)."""
    streaming: bool = True
    """False for a plain session: ``turns`` is used and nothing below it."""
    turns: dict[str, PlainTurn] = field(default_factory=dict)
    """A plain session's requests by ``rid``."""
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
        busy = self.inflight is not None or any(not t.req.finished for t in self.turns.values())
        return self.timeout is not None and not busy and now - self.last_active > self.timeout

    def plain_prompt(self, rid: str, sp: SessionParamsIn, delta: list[int]) -> list[int]:
        """A plain-session request's full prompt, by SGLang's rules; records ``rid`` as a node of the tree.
        ``BadRequest`` naming the field when the request it continues is unknown or unfinished."""
        parent: PlainTurn | None = None
        if sp.rid is not None:
            parent = self.turns.get(sp.rid)
            if parent is None:
                raise BadRequest(f"session_params.rid={sp.rid!r} is not a request of session {self.id!r}",
                                 "session_params.rid")  # fmt: skip
            if not parent.req.finished:
                raise BadRequest(f"session_params.rid={sp.rid!r} has not finished; continue it once it has",
                                 "session_params.rid")  # fmt: skip
        if sp.replace:
            if parent is None:
                self.turns.clear()
            else:
                self._drop_children(parent)
        if rid in self.turns:
            raise BadRequest(f"rid={rid!r} is already a request of session {self.id!r}; send a new rid", "rid")
        ids = delta
        if parent is not None:
            before = parent.req.input_ids + ([] if sp.drop_previous_output else parent.req.output_ids)
            ids = (before[: sp.offset] if sp.offset else before) + delta
            parent.children.append(rid)
        if not ids:
            raise BadRequest("input_ids: a session request needs input tokens after its history", "input_ids")
        self.turns[rid] = PlainTurn(Req(rid=rid, input_ids=ids, params=SamplingParams()), sp.rid)
        return ids

    def _drop_children(self, turn: PlainTurn) -> None:
        for child in turn.children:
            dropped = self.turns.pop(child, None)
            if dropped is not None:
                self._drop_children(dropped)
        turn.children = []

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
    def streaming_count(self) -> int:
        """Open streaming sessions (the ones that pin KV; plain sessions pin nothing)."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.streaming and not s.closed)

    @property
    def held_tokens(self) -> int:
        """Tokens pinned by open sessions; sessions sharing a prefix count it once each (an upper bound)."""
        with self._lock:
            return sum(s.held_tokens for s in self._sessions.values() if not s.closed)

    # --- HTTP handlers ----------------------------------------------------------------------------
    def open(self, sid: str, timeout: float | None, *, streaming: bool = True) -> None:
        """Open session ``sid`` (streaming, or plain); ``BadRequest`` if it is open already."""
        with self._lock:
            if sid in self._sessions:
                raise BadRequest(f"session_id {sid!r} is already open", "session_id")
            self._sessions[sid] = Session(id=sid, timeout=timeout, streaming=streaming)

    def begin_turn(self, rid: str, sp: SessionParamsIn, delta: list[int]) -> list[int]:
        """Reserve session ``sp.id`` for request ``rid`` and return its full prompt: for a streaming session
        the session's ids + ``delta``, for a plain one what ``Session.plain_prompt`` says. ``BadRequest``
        naming the field when the request cannot start. Follow with ``attach`` once the request is built,
        or ``release`` if building it fails."""
        sid = sp.id
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.closed:
                raise BadRequest(f"session_params.id: unknown or closed session {sid!r}; open one with "
                                 "/open_session", "session_params.id")  # fmt: skip
            s.last_active = time.monotonic()
            if not s.streaming:
                return s.plain_prompt(rid, sp, delta)
            if sp.replace:
                raise BadRequest("session_params.replace is not allowed on a streaming session (append-only)",
                                 "session_params.replace")  # fmt: skip
            if sp.drop_previous_output:
                raise BadRequest("session_params.drop_previous_output is not allowed on a streaming session",
                                 "session_params.drop_previous_output")  # fmt: skip
            if sp.offset not in (None, 0, -1):
                raise BadRequest(f"session_params.offset={sp.offset}: streaming sessions are append-only (use 0)",
                                 "session_params.offset")  # fmt: skip
            s.check_turn(sp.rid, delta)
            s.inflight = Req(rid=rid, input_ids=[], params=SamplingParams())  # placeholder until built
            s.last_active = time.monotonic()
            return s.context_ids + delta

    def attach(self, sid: str, req: Req) -> None:
        """The turn reserved by ``begin_turn`` is ``req``."""
        with self._lock:
            s = self._sessions[sid]
            if s.streaming:
                s.inflight = req
            elif req.rid in s.turns:
                s.turns[req.rid].req = req

    def release(self, sid: str, rid: str) -> None:
        """Drop request ``rid`` reserved by ``begin_turn`` (it was rejected before it ran)."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return
            if s.streaming:
                s.inflight = None
                return
            turn = s.turns.pop(rid, None)
            if turn is not None and turn.parent in s.turns:
                s.turns[turn.parent].children.remove(rid)

    # --- scheduler thread -------------------------------------------------------------------------
    def expired(self, now: float) -> list[str]:
        """Ids of the sessions whose inactivity timeout has passed."""
        with self._lock:
            return [s.id for s in self._sessions.values() if s.expired(now)]

    def finish_turn(self, req: Req, node: Node, ids_with_kv: list[int]) -> None:
        """``req`` finished: its session now pins ``node`` (covering ``ids_with_kv``) instead of the old one."""
        with self._lock:
            s = self._sessions.get(req.session_id or "")
            if s is None or s.closed or not s.streaming:  # a plain session reads ``req`` itself
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
