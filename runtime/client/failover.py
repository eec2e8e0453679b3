"""Retries and failover: one turn's request, sent until a server answers it.

On one server (:func:`_call`): take the session the episode's :class:`SessionHold` grants (opening
it is part of the attempt: a transient ``/open_session`` failure is retried like the request), send
the request (a turn in a session on an oversubscribed server with ``SESSION_TURN_PRIORITY``),
and on a transient failure retry with exponential backoff (more patiently after an
abort: no KV room now clears as running requests finish). A session the server refuses is dropped
and the turn resent with the full ids (recorded ``release``).

Across servers (:func:`run_turn`): when a server fails the retries, the router marks it down and
picks another; the episode leaves its session and admission slot on the old one and re-prefills
its whole conversation on the new one (recorded ``release`` naming the failover; the recomputed
tokens are counted by the caller). Each attempt is a router :class:`~interleaf.runtime.client.router.Flight`:
when the health check declares the server down mid-turn (``ServerDown``) the attempt is cut short and
fails over at once, without retries there. ``NoHealthyServer`` ends the turn, listing each server's
failure; ``PoolClosed`` ends it when the pool closes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from interleaf.runtime.client.backend import Backend, GenerateResult, SessionTurn
from interleaf.runtime.client.errors import (
    BackendError,
    BackendUnavailable,
    PoolClosed,
    RequestAborted,
    ServerDown,
    SessionRejected,
)
from interleaf.runtime.client.session_hold import SessionHold
from interleaf.telemetry.records import RetentionDecision, RetentionRecord

_ABORT_EXTRA_RETRIES = 4
_MAX_BACKOFF_S = 4.0
SESSION_TURN_PRIORITY = 1
"""SGLang request priority of a turn inside a streaming session, sent while the server is oversubscribed
(its open episodes' contexts exceed its KV; otherwise, and for a stateless turn, none: 0). On a server with
priority scheduling a held conversation's next turn is then admitted before the stateless turns waiting
there, as Continuum runs a program's turns ahead of newer programs: the KV the session pins is used at once
instead of staying pinned through the queue, and the admitted episodes are not slowed by the deferred ones
(docs/retention.md, "Admission control": priority for turns in sessions). Where every context fits, first
come first served keeps the makespan (priority there finished the admitted episodes first and the rest
later: `reference` 256 agents 0.93x `none`'s makespan, simulated)."""


@dataclass(frozen=True)
class TurnRequest:
    """One turn as the episode prepared it: the same on every attempt and every server."""

    delta: list[int]
    """The turn's new token ids (tokenised once)."""
    sampling: dict[str, Any]
    """SGLang ``sampling_params``."""
    max_new_tokens: int
    """The generation bound (also what the KV budget reserves for the output)."""
    return_hidden_states: bool = False
    """Whether the engine should return the hidden states."""


@dataclass(frozen=True)
class TurnOutcome:
    """The answer to a turn, and how it was obtained."""

    result: GenerateResult
    """What the server that answered returned."""
    failover_from: str | None
    """The server the episode left during this turn (it failed), or None."""
    in_session: bool
    """Whether the answering call ran inside a streaming session."""


async def run_turn(hold: SessionHold, turn: TurnRequest, records: list[RetentionRecord]) -> TurnOutcome:
    """Run ``turn`` on the episode's server, failing over to another when it goes down.

    Appends what was done to the episode's KV on the way (session refused, failover, admission
    waits, budget refusals) to ``records``. Raises the last error when no server is left.
    """
    pool, conv = hold.pool, hold.conversation
    tried: dict[str, str] = {}
    failover_from: str | None = None
    with pool.turn_in_flight():
        while True:
            url, failover_from = await _route(hold, tried, failover_from, records)
            try:
                result = await _call(hold, pool.backends[url], turn, records)
            except BackendUnavailable as exc:
                if not isinstance(exc, RequestAborted):
                    pool.router.mark_down(url, exc.reason)
                tried[url] = exc.reason
                continue
            return TurnOutcome(result, failover_from, conv.session_id is not None)


async def _route(
    hold: SessionHold, tried: dict[str, str], failover_from: str | None, records: list[RetentionRecord]
) -> tuple[str, str | None]:
    """The server for the turn's next attempt, and the server the turn left (if it did): leaving the
    episode's old server gives up its session and admission slot there, recorded as a failover."""
    pool, conv = hold.pool, hold.conversation
    if pool.closed:
        raise PoolClosed(conv.server or "", "", f"episode {hold.episode_id}: the pool was closed (pool.aclose())")
    try:
        url = pool.router.pick(hold.episode_id, exclude=frozenset(tried))
    except BackendError as exc:
        detail = "; ".join(f"{u}: {why}" for u, why in tried.items())
        raise type(exc)(exc.server, exc.request_id, f"{exc.reason}" + (f" [{detail}]" if detail else "")) from exc
    if conv.server is not None and url != conv.server:
        failover_from = failover_from or conv.server
        if conv.session_id is not None:
            await hold.close_session()
        hold.leave_admission()
        records.append(
            RetentionRecord(
                policy=pool.policy.name.value,
                decision=RetentionDecision.RELEASE,
                reason=f"failover: {conv.server} failed ({tried.get(conv.server, 'down')}); "
                f"re-prefill of {len(conv.ids)} tokens on {url}",
            )
        )
        pool.decisions["failover"] += 1
    conv.server = url
    return url, failover_from


async def _call(
    hold: SessionHold, backend: Backend, turn: TurnRequest, records: list[RetentionRecord]
) -> GenerateResult:
    """One server: session admission, then the request with retries and backoff."""
    pool, conv = hold.pool, hold.conversation
    attempt = 0
    give_up_at: float | None = None  # past the retries: when waiting for the pool's own sessions stops
    while True:
        if pool.closed:
            raise PoolClosed(backend.url, "", f"episode {hold.episode_id}: the pool was closed (pool.aclose())")
        need = len(conv.ids) + len(turn.delta) + turn.max_new_tokens
        session: SessionTurn | None = None
        rid = ""
        outstanding: int | None = None
        try:
            # The router may cut the attempt short: its server declared down (ServerDown), the pool closed.
            async with pool.router.flight(backend.url) as flight:
                # Inside the retries: a transient /open_session failure is retried like the request.
                await hold.open_or_grow(backend, need, turn.max_new_tokens, records)
                ids, session = conv.request(turn.delta)
                # 32 random bits tell a retry's request from the first (uuid4 read os.urandom per call: ~1 % of
                # an actor's CPU at 1,000 episodes in flight); ``random`` is re-seeded in forked children.
                rid = flight.rid = f"{hold.episode_id}-t{conv.turns}-{random.getrandbits(32):08x}"
                outstanding = (len(turn.delta) if session and session.previous_rid else len(ids)) + turn.max_new_tokens
                pool.router.begin(backend.url, outstanding)
                priority = None
                if session is not None:
                    pool.held_request(backend.url, +1)
                    priority = SESSION_TURN_PRIORITY if pool.oversubscribed(backend.url) else None
                return await backend.generate(
                    ids,
                    sampling_params=turn.sampling,
                    rid=rid,
                    session=session,
                    priority=priority,
                    return_hidden_states=turn.return_hidden_states,
                )
        except ServerDown:
            # Not retried there: the caller fails over at once. A hung server would hold the failover for the
            # abort's and the close's timeouts, so they run in the background.
            hold.abandon(rid)
            raise
        except SessionRejected as exc:
            await hold.close_session()
            records.append(
                RetentionRecord(
                    policy=pool.policy.name.value,
                    decision=RetentionDecision.RELEASE,
                    reason=f"session refused by {backend.url} ({exc.reason}); resent with full ids",
                )
            )
            if attempt >= pool.retries:
                raise
        except BackendUnavailable as exc:
            if session is not None:
                await hold.close_session(rid=rid)
            budget = pool.budgets.get(backend.url) if isinstance(exc, RequestAborted) else None
            # An abort (no KV room now) clears as running requests finish: be more patient.
            limit = pool.retries + (_ABORT_EXTRA_RETRIES if budget is not None else 0)
            releasing: list[asyncio.Task] = []
            if budget is not None:
                # What fills the KV may be this pool's own paused sessions: a turn without a session needs
                # its whole context unpinned, and waiting would not free them (their owners are in tools).
                releasing = budget.make_room(
                    need, exclude=hold.episode_id, reason="released for a request the server had no KV for"
                )
            if attempt >= limit:
                # Past the retries an abort is still worth retrying while this pool's own sessions pin the KV:
                # a paused one is being released now (by this turn or an earlier one); one whose turn is in
                # flight will pause or end.
                if budget is None or not (releasing or budget.pinned_besides(hold.episode_id)):
                    raise
                give_up_at = pool.clock() + pool.session_timeout_s if give_up_at is None else give_up_at
                if pool.clock() >= give_up_at:
                    raise
                if not releasing:
                    pool.decisions["abort_waited_for_own_turns"] += 1
                    await budget.paused_or_dropped(_MAX_BACKOFF_S)
            if releasing:
                pool.decisions["released_for_abort"] += len(releasing)
                await asyncio.wait(releasing)
            if attempt < limit:
                await asyncio.sleep(min(pool.backoff_s * 2**attempt, _MAX_BACKOFF_S))
        except BaseException:
            # Cancelled or failed for good: the server must not keep this turn or its session,
            # and an episode that may never come back must not keep others waiting for admission.
            await asyncio.shield(hold.close_session(rid=rid or None))
            hold.leave_admission()
            raise
        finally:
            if outstanding is not None:
                pool.router.end(backend.url, outstanding)
                if session is not None:
                    pool.held_request(backend.url, -1)
        attempt += 1


__all__ = ["TurnOutcome", "TurnRequest", "run_turn"]
