"""SessionHold: what one episode keeps on its server, and the retention decision at each tool pause.

Three claims, taken and given back together: the streaming session that pins the conversation's
KV, the tokens the pool's :class:`~interleaf.runtime.client.kv_budget.KVBudget` counts for it, and
the episode's slot in admission control (:mod:`interleaf.runtime.client.admission`).

* Before a turn (:meth:`SessionHold.open_or_grow`): wait for admission (or, when the server has spare
  capacity, run the turn without a session for now: deferred), reserve the turn's tokens
  in the budget, open a session (or grow the held one); when the budget refuses, the turn runs
  without a session (recorded ``denied``). When the server refuses ``/open_session`` the turn runs
  without a session too: a 4xx refusal (e.g. an engine without its radix cache) is remembered by the
  pool for that server, whose episodes then run stateless (recorded ``unsupported``); a malformed
  answer costs this turn its session only (recorded ``release``). A transient failure (408/429/5xx,
  no connection) is retried like the request itself (:mod:`interleaf.runtime.client.failover`).
* At a tool pause (:meth:`SessionHold.pause`): the retention policy holds the session (preemptable,
  maybe with a TTL) or releases it; every outcome is a :class:`RetentionRecord`.
* During the pause the budget, the TTL timer or admission control may release the hold; the
  record of that arrives with the next turn (:meth:`SessionHold.take_pending`).
* :meth:`SessionHold.teardown` gives everything back, also after errors and cancellation.

Retries and failover around a turn's request are :mod:`interleaf.runtime.client.failover`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from interleaf.runtime.client.admission import AdmissionAbandoned
from interleaf.runtime.client.backend import Backend
from interleaf.runtime.client.capabilities import retention_gaps
from interleaf.runtime.client.conversation import Conversation
from interleaf.runtime.client.errors import BackendError, ServerDown, SessionRejected
from interleaf.runtime.client.kv_budget import KVBudget
from interleaf.runtime.client.retention import PauseContext
from interleaf.telemetry.records import RetentionDecision, RetentionRecord

if TYPE_CHECKING:
    # Only for annotations: the pool imports this module (through the episode model), never the reverse.
    from interleaf.runtime.client.pool import BackendPool

_CLOSE_TIMEOUT_S = 10.0


class SessionHold:
    """One episode's session, KV-budget hold and admission slot on the server its conversation lives on."""

    def __init__(
        self, pool: BackendPool, episode_id: str, conversation: Conversation, *, max_turns: int | None
    ) -> None:
        self.pool = pool
        self.episode_id = episode_id
        self.conversation = conversation
        self.max_turns = max_turns
        """The episode's turn limit if known (admission control projects its peak context from it)."""
        self._pending: list[RetentionRecord] = []
        self._paused_at: float | None = None
        self._paused_tools: list[str] = []
        self._ttl_task: asyncio.Task | None = None
        self._deferred = False
        """This turn runs without a session because admission control deferred the episode."""
        self._unsupported_noted: set[str] = set()
        """Servers whose missing capability this episode has recorded already (once each)."""
        self._refused: str | None = None
        """Why the server refused this turn's ``/open_session`` (the turn runs without a session), or None."""

    # -- around a pause ---------------------------------------------------------------------------

    async def pause(self, tool_names: list[str]) -> RetentionRecord:
        """Apply the retention policy for a pause over ``tool_names``; the record says what was done."""
        pool, conv, policy = self.pool, self.conversation, self.pool.policy
        tools = tuple(tool_names)
        self._cancel_ttl()  # pause() twice without a turn between: one timer only
        self._paused_at = self.pool.clock()
        self._paused_tools = list(tools)
        expected = pool.estimator.expected_s(list(tools))
        if not policy.uses_sessions:
            record = self._record(
                RetentionDecision.NONE,
                policy.decide(self._context(tools, expected)).reason,
                predicted_pause_s=expected,
            )
        elif conv.server is not None and not pool.serves_sessions(conv.server):
            record = self._unsupported(pool.backends[conv.server], predicted_pause_s=expected)
        elif conv.session_id is None or conv.server is None:
            decision = policy.decide(self._context(tools, expected))
            if self._deferred:
                why = (
                    "no session to hold: admission control has not admitted the episode yet (the turn ran without "
                    "a session rather than wait: the server was not crowded, or the episode was next in line)"
                )
            elif self._refused is not None:
                why = f"no session to hold: {self._refused}"
            else:
                why = "no session to hold: the KV budget refused one at this turn's start"
            record = self._record(
                RetentionDecision.DENIED if decision.hold else RetentionDecision.RELEASE,
                why if decision.hold else decision.reason,
                predicted_pause_s=expected,
            )
        elif not self._admitted(conv.server):
            await self.close_session()
            record = self._suspend_record(f"at the pause ({len(conv.ids)} tokens released)")
        else:
            decision = policy.decide(self._context(tools, expected))
            if decision.hold:
                budget = pool.budgets[conv.server]
                budget.pause(self.episode_id, value=decision.value, on_release=self._released, expected_s=expected)
                if decision.ttl_s is not None:
                    self._ttl_task = asyncio.ensure_future(self._expire(decision.ttl_s))
                record = self._record(
                    RetentionDecision.HOLD, decision.reason, predicted_pause_s=expected, held_tokens=len(conv.ids)
                )
            else:
                await self.close_session()
                record = self._record(RetentionDecision.RELEASE, decision.reason, predicted_pause_s=expected)
        pool.decisions[record.decision.value] += 1
        return record

    async def resume(self) -> float | None:
        """Back from a pause: learn its length, stop the TTL timer, reclaim the hold if it survived.

        Returns the measured pause, seconds (None when there was no pause).
        """
        pause_s = None
        if self._paused_at is not None:
            pause_s = self.pool.clock() - self._paused_at
            self.pool.estimator.observe(self._paused_tools, pause_s)
            self._paused_at = None
        self._cancel_ttl()
        server = self.conversation.server
        # Also when the session is already detached: a release in progress must finish first.
        if server is not None and self.episode_id in self.pool.budgets[server].holds:
            await self.pool.budgets[server].resume(self.episode_id)
        return pause_s

    def take_pending(self) -> list[RetentionRecord]:
        """The records of releases that happened since the last turn (they are reported with the next)."""
        records, self._pending = self._pending, []
        return records

    # -- around a turn ----------------------------------------------------------------------------

    async def open_or_grow(self, backend: Backend, need: int, max_new: int, records: list[RetentionRecord]) -> None:
        """Make sure the turn runs in a session with ``need`` tokens of budget, or in none."""
        pool, conv, policy = self.pool, self.conversation, self.pool.policy
        budget = pool.budgets[backend.url]
        self._deferred = False
        self._refused = None
        if not policy.uses_sessions:
            return
        if not pool.serves_sessions(backend.url):
            # Said once per server, on the first turn that runs there: the turn's retention events
            # (its trace span, the dashboard) show what the episode's KV really got.
            if backend.url not in self._unsupported_noted:
                self._unsupported_noted.add(backend.url)
                records.append(self._unsupported(backend))
            return
        if conv.session_id is not None and not self._admitted(backend.url):
            # Suspended while its last turn ran, and no pause() since: let go now, then queue.
            await self.close_session()
            records.append(self._suspend_record(f"before turn {conv.turns} ({len(conv.ids)} tokens released)"))
        if conv.session_id is None:
            await self._admit(backend.url, need, max_new, records)
            if not self._admitted(backend.url):
                # Deferred: the turn runs now without a session (the server is not crowded, or the episode
                # is at the head of the queue).
                self._deferred = True
                pool.decisions["deferred"] += 1
                return
        if conv.session_id is not None:
            own = budget.holds.get(self.episode_id)
            value = own.value if own is not None else 0.0
            if not await budget.reserve(
                self.episode_id, need, wait_s=pool.admission_wait_s, preempt=policy.preempts, value=value
            ):
                await self.close_session()
                records.append(self._denied(f"could not grow the held session to {need} tokens", budget))
            return
        value = policy.decide(
            PauseContext(need, (), pool.estimator.expected_s([]), 0.0, pool.pressure(backend.url))
        ).value
        if not await budget.reserve(
            self.episode_id, need, wait_s=pool.admission_wait_s, preempt=policy.preempts, value=value
        ):
            records.append(self._denied(f"no room for a {need}-token session", budget))
            return
        opening = asyncio.ensure_future(backend.open_session(timeout_s=pool.session_timeout_s))
        try:
            sid = await asyncio.shield(opening)
        except asyncio.CancelledError:
            budget.drop(self.episode_id)
            await _close_once_opened(backend, opening)  # the server may open it all the same
            raise
        except SessionRejected as exc:
            # The server answered, and not with a session: the turn runs without one (full ids), as after a
            # refused session turn. A 4xx is the server's configuration (sessions off, no radix cache): its
            # episodes stop asking. Transient failures (BackendUnavailable) are retried by the caller.
            budget.drop(self.episode_id)
            if exc.status is not None and 400 <= exc.status < 500:
                pool.sessions_refused.setdefault(backend.url, f"HTTP {exc.status}: {exc.reason}")
                self._unsupported_noted.add(backend.url)
                records.append(self._unsupported(backend))
            else:
                self._refused = f"{backend.url} refused the session at this turn's start ({exc.reason})"
                records.append(
                    self._record(RetentionDecision.RELEASE, f"{self._refused}; this turn runs without a session")
                )
            pool.decisions["session_refused"] += 1
            return
        except BaseException:
            budget.drop(self.episode_id)
            raise
        conv.attach_session(sid)

    def turn_done(self, server: str, added: int) -> None:
        """A turn that ran on ``server`` is in the conversation (``added`` tokens longer): shrink the
        hold to what the server keeps, and let admission control re-project the episode."""
        conv = self.conversation
        if conv.session_id is not None and conv.server is not None:
            self.pool.budgets[conv.server].shrink(self.episode_id, len(conv.ids))
        self.pool.after_turn(
            self.episode_id,
            server,
            context=len(conv.ids),
            turns_done=conv.turns,
            # The first turn's tokens are the prompt, not growth.
            added=added if conv.turns > 1 else None,
        )

    async def close_session(self, *, rid: str | None = None) -> None:
        """Close our session (abort ``rid`` first) and free its budget; errors swallowed (best effort)."""
        conv = self.conversation
        server = conv.server
        sid = conv.detach_session()
        if server is None:
            return
        backend = self.pool.backends[server]
        try:
            if rid is not None:
                await backend.abort(rid)
            if sid is not None:
                with contextlib.suppress(BackendError, asyncio.TimeoutError):
                    await asyncio.wait_for(backend.close_session(sid), _CLOSE_TIMEOUT_S)
        finally:
            self.pool.budgets[server].drop(self.episode_id)

    def abandon(self, rid: str) -> None:
        """The server was declared down during the turn: forget the session and free its budget now, and
        abort the request and close the session there in the background (best effort, bounded): a hung
        server would hold the failover for their timeouts."""
        conv = self.conversation
        server = conv.server
        sid = conv.detach_session()
        if server is None:
            return
        self.pool.budgets[server].drop(self.episode_id)
        if rid or sid is not None:
            self.pool.in_background(_abort_and_close(self.pool.backends[server], rid, sid))

    def leave_admission(self) -> None:
        """Give up the episode's admission slot on its server (it moves, fails or ends)."""
        conv = self.conversation
        admission = self.pool.admissions.get(conv.server) if conv.server is not None else None
        if admission is not None:
            admission.leave(self.episode_id)

    async def teardown(self) -> None:
        """Give back everything the episode holds: the TTL timer, the session, the budget, the slot."""
        self._cancel_ttl()
        conv = self.conversation
        if conv.server is not None:
            hold = self.pool.budgets[conv.server].holds.get(self.episode_id)
            if hold is not None and hold.releasing is not None:
                with contextlib.suppress(Exception):
                    await hold.releasing
        await self.close_session()
        self.leave_admission()
        self.pool.growth.observe_episode(conv.turns)

    # -- internals --------------------------------------------------------------------------------

    def _cancel_ttl(self) -> None:
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            self._ttl_task = None

    def _context(self, tools: tuple[str, ...], expected: float) -> PauseContext:
        url = self.conversation.server or next(iter(self.pool.backends))
        return PauseContext(
            context_tokens=len(self.conversation.ids),
            tools=tools,
            expected_pause_s=expected,
            ttl_s=self.pool.estimator.ttl_s(list(tools)),
            pressure=self.pool.pressure(url),
        )

    async def _expire(self, ttl_s: float) -> None:
        await asyncio.sleep(ttl_s)
        server = self.conversation.server
        if server is not None and self.episode_id in self.pool.budgets[server].holds:
            self.pool.budgets[server].release_paused(self.episode_id, f"ttl {ttl_s:.2f} s expired")

    async def _released(self, reason: str) -> None:
        """The budget, the TTL timer or admission control released our paused hold: close the session, note it."""
        conv = self.conversation
        held = len(conv.ids)
        sid = conv.detach_session()
        if sid is not None and conv.server is not None:
            # Best effort, as close_session(): a close that times out must not fail the release task.
            with contextlib.suppress(BackendError, asyncio.TimeoutError):
                await asyncio.wait_for(self.pool.backends[conv.server].close_session(sid), _CLOSE_TIMEOUT_S)
        self._pending.append(
            self._record(
                RetentionDecision.RELEASE if self._admitted(conv.server) else RetentionDecision.SUSPEND,
                f"released during the pause ({held} tokens): {reason}",
            )
        )
        self.pool.decisions["released_in_pause"] += 1

    def _admitted(self, server: str | None) -> bool:
        """Whether admission control lets this episode hold KV on ``server`` (True when it is off)."""
        admission = self.pool.admissions.get(server) if server is not None else None
        return admission is None or admission.is_admitted(self.episode_id)

    async def _admit(self, url: str, need: int, max_new: int, records: list[RetentionRecord]) -> None:
        """Wait for admission control to let this episode hold KV on ``url`` (no-op when it is off)."""
        admission = self.pool.admissions.get(url)
        if admission is None:
            return
        try:
            with self.pool.router.waiting(url, need):
                waited = await admission.admit(
                    self.episode_id,
                    context=need,
                    turns_done=self.conversation.turns,
                    max_turns=self.max_turns,
                    prior_growth=max_new,
                    alive=lambda: self.pool.router.servers[url].healthy,
                    crowded=(lambda: self.pool.crowded(url)) if self.pool.admission_defer else None,
                )
        except AdmissionAbandoned as exc:
            raise ServerDown(url, "", str(exc)) from exc
        if waited > 0:
            self.pool.decisions["queued"] += 1
            records.append(
                self._record(
                    RetentionDecision.QUEUED,
                    f"waited {waited:.2f} s for admission on {url} (KV budget committed to episodes admitted earlier)",
                    wait_s=waited,
                )
            )

    def _record(
        self,
        decision: RetentionDecision,
        reason: str,
        *,
        predicted_pause_s: float | None = None,
        held_tokens: int = 0,
        wait_s: float = 0.0,
    ) -> RetentionRecord:
        return RetentionRecord(
            policy=self.pool.policy.name.value,
            decision=decision,
            reason=reason,
            predicted_pause_s=predicted_pause_s,
            held_tokens=held_tokens,
            wait_s=wait_s,
        )

    def _unsupported(self, backend: Backend, *, predicted_pause_s: float | None = None) -> RetentionRecord:
        """The policy needs streaming sessions and ``backend`` serves none: the turn runs stateless."""
        gaps = retention_gaps(self.pool.policy.name, backend.info)
        refused = self.pool.sessions_refused.get(backend.url)
        if gaps:
            reason = gaps[0].message()
        elif refused is not None:
            reason = (
                f"{backend.url} refused /open_session although /server_info says it serves streaming sessions "
                f"({refused}); episodes run retention none there (check the server's flags, e.g. its radix cache)"
            )
        else:
            reason = f"{backend.url} serves no streaming sessions"
        return RetentionRecord(
            policy="none",
            decision=RetentionDecision.UNSUPPORTED,
            reason=reason,
            predicted_pause_s=predicted_pause_s,
        )

    def _suspend_record(self, what: str) -> RetentionRecord:
        return self._record(
            RetentionDecision.SUSPEND,
            f"suspended by admission control {what}: the episodes admitted before this one "
            "need the KV budget to finish; the next turn waits to be readmitted",
        )

    def _denied(self, what: str, budget: KVBudget) -> RetentionRecord:
        self.pool.decisions["admission_denied"] += 1
        return self._record(
            RetentionDecision.DENIED,
            f"KV budget of {budget.server} full ({budget.held}/{budget.capacity} tokens held): "
            f"{what}; this turn runs without a session",
        )


async def _abort_and_close(backend: Backend, rid: str, sid: str | None) -> None:
    """Abort ``rid`` and close ``sid`` on a server the pool left (best effort, bounded)."""
    with contextlib.suppress(Exception):
        if rid:
            await asyncio.wait_for(backend.abort(rid), _CLOSE_TIMEOUT_S)
        if sid is not None:
            await asyncio.wait_for(backend.close_session(sid), _CLOSE_TIMEOUT_S)


async def _close_once_opened(backend: Backend, opening: asyncio.Future[str]) -> None:
    """A caller cancelled while its ``/open_session`` was on the wire: the server may still open the
    session, and nobody would ever close it (it would pin KV until its timeout). Wait for the answer and
    close what it opened; best effort, bounded."""
    with contextlib.suppress(Exception):
        sid = await asyncio.wait_for(opening, _CLOSE_TIMEOUT_S)
        await asyncio.wait_for(backend.close_session(sid), _CLOSE_TIMEOUT_S)


__all__ = ["SessionHold"]
