"""EpisodeModel: one episode's ``AgentModel`` — token-exact turns, the session, retention, failover.

A turn (``generate``): tokenise the delta once, wait for episode admission control when the episode
may not hold KV yet, resume or open a streaming session when the policy uses sessions and the KV
budget admits it, send only the delta in a held session (full ids otherwise), retry transient
failures with backoff, fail over to another server with a recorded re-prefill, and report the
engine's cache figures and timings. ``pause`` applies the retention
policy; ``close`` (and leaving ``async with``) always closes the session, also on error and
cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interleaf.agents.model import Completion, Constraint
from interleaf.runtime.client.admission import AdmissionAbandoned
from interleaf.runtime.client.backend import Backend, GenerateResult
from interleaf.runtime.client.conversation import Conversation
from interleaf.runtime.client.errors import BackendError, BackendUnavailable, RequestAborted, SessionRejected
from interleaf.runtime.client.retention import PauseContext
from interleaf.telemetry.records import CacheFigures, RetentionDecision, RetentionRecord, TurnTimings

if TYPE_CHECKING:
    from interleaf.runtime.client.pool import BackendPool

_CLOSE_TIMEOUT_S = 10.0
_ABORT_EXTRA_RETRIES = 4
_MAX_BACKOFF_S = 4.0


@dataclass
class EpisodeCompletion(Completion):
    """A Completion plus what the runtime did around the call."""

    failover_from: str | None = None
    """Server the episode left during this turn (it failed), or None."""
    in_session: bool = False
    """Whether the call ran inside a streaming session."""
    pause_s: float | None = None
    """Measured pause before this turn (since ``pause()``), seconds."""


class EpisodeModel:
    """``interleaf.agents.model.AgentModel`` for one episode on a :class:`BackendPool`."""

    def __init__(self, pool: BackendPool, episode_id: str, *, max_turns: int | None = None) -> None:
        self.pool = pool
        self.episode_id = episode_id
        self.max_turns = max_turns
        """The episode's turn limit if known (admission control projects its peak context from it)."""
        self.model_name = pool.model_name
        self.conversation = Conversation()
        self._pending: list[RetentionRecord] = []
        self._paused_at: float | None = None
        self._paused_tools: list[str] = []
        self._ttl_task: asyncio.Task | None = None
        self._closed = False
        self._turn = 0

    # -- AgentModel ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.pool.encode(text))

    async def generate(
        self,
        delta_text: str,
        *,
        max_new_tokens: int,
        constraint: Constraint | None = None,
        stop: list[str] | None = None,
        temperature: float = 0.0,
        ignore_eos: bool = False,
        stop_token_ids: list[int] | None = None,
        seed: int | None = None,
        return_hidden_states: bool = False,
    ) -> EpisodeCompletion:
        """Append ``delta_text`` (tokenised once) and generate; see the module docstring."""
        if self._closed:
            raise BackendError("", "", f"episode {self.episode_id} is closed; open a new one with pool.episode()")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        delta = self.pool.encode(delta_text)
        sampling: dict[str, Any] = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        if constraint is not None:
            sampling[constraint.kind] = constraint.value
        if stop:
            sampling["stop"] = list(stop)
        if stop_token_ids:
            sampling["stop_token_ids"] = list(stop_token_ids)
        if ignore_eos:
            sampling["ignore_eos"] = True
        if seed is not None:
            sampling["sampling_seed"] = seed
        pause_s = await self._resume()
        records, self._pending = self._pending, []
        result, failover_from, in_session = await self._run_turn(
            delta, sampling, max_new_tokens, records, return_hidden_states
        )
        conv = self.conversation
        recomputed = conv.recomputed(result.prompt_tokens, result.cached_tokens)
        if failover_from is not None:
            self.pool.reprefill_tokens += recomputed
        conv.commit(delta, result.output_ids, result.request_id)
        if conv.session_id is not None and conv.server is not None:
            self.pool.budgets[conv.server].shrink(self.episode_id, len(conv.ids))
        self.pool.observe_call(result.server, result.prompt_tokens - result.cached_tokens + result.completion_tokens)
        self._turn += 1
        self.pool.after_turn(
            self.episode_id,
            result.server,
            context=len(conv.ids),
            turns_done=self._turn,
            added=len(delta) + result.completion_tokens if self._turn > 1 else None,
        )
        ttft = result.ttft_s
        e2e = result.server_e2e_s if result.server_e2e_s is not None else result.e2e_s
        return EpisodeCompletion(
            text=result.text,
            delta_ids=delta,
            output_ids=result.output_ids,
            finish_reason=result.finish_reason,
            request_id=result.request_id,
            server=result.server,
            cache=CacheFigures(
                prompt_tokens=result.prompt_tokens,
                cached_tokens=result.cached_tokens,
                recomputed_tokens=recomputed,
                completion_tokens=result.completion_tokens,
                batch_size=result.batch_size or 1.0,
            ),
            timings=TurnTimings(
                queue_s=result.queue_s or 0.0,
                ttft_s=ttft or 0.0,
                decode_s=max(0.0, e2e - ttft) if ttft is not None else 0.0,
                e2e_s=result.e2e_s,
            ),
            hidden_states=result.hidden_states,
            retention=records,
            failover_from=failover_from,
            in_session=in_session,
            pause_s=pause_s,
        )

    async def pause(self, tool_names: list[str]) -> RetentionRecord:
        """Apply the retention policy for a pause over ``tool_names``; the record says what was done."""
        if self._closed:
            raise BackendError("", "", f"episode {self.episode_id} is closed; pause() after close()")
        pool, conv, policy = self.pool, self.conversation, self.pool.policy
        tools = tuple(tool_names)
        if self._ttl_task is not None:  # pause() twice without a turn between: one timer only
            self._ttl_task.cancel()
            self._ttl_task = None
        self._paused_at = time.monotonic()
        self._paused_tools = list(tools)
        expected = pool.estimator.expected_s(list(tools))
        if not policy.uses_sessions:
            record = RetentionRecord(
                policy=policy.name.value,
                decision=RetentionDecision.NONE,
                reason=policy.decide(self._context(tools, expected)).reason,
                predicted_pause_s=expected,
            )
        elif conv.session_id is None or conv.server is None:
            decision = policy.decide(self._context(tools, expected))
            record = RetentionRecord(
                policy=policy.name.value,
                decision=RetentionDecision.DENIED if decision.hold else RetentionDecision.RELEASE,
                reason="no session to hold: the KV budget refused one at this turn's start"
                if decision.hold
                else decision.reason,
                predicted_pause_s=expected,
            )
        elif not self._admitted(conv.server):
            await self._close_session()
            record = self._suspend_record(f"at the pause ({len(conv.ids)} tokens released)")
        else:
            decision = policy.decide(self._context(tools, expected))
            if decision.hold:
                budget = pool.budgets[conv.server]
                budget.pause(self.episode_id, value=decision.value, on_release=self._released, expected_s=expected)
                if decision.ttl_s is not None:
                    self._ttl_task = asyncio.ensure_future(self._expire(decision.ttl_s))
                record = RetentionRecord(
                    policy=policy.name.value,
                    decision=RetentionDecision.HOLD,
                    reason=decision.reason,
                    predicted_pause_s=expected,
                    held_tokens=len(conv.ids),
                )
            else:
                await self._close_session()
                record = RetentionRecord(
                    policy=policy.name.value,
                    decision=RetentionDecision.RELEASE,
                    reason=decision.reason,
                    predicted_pause_s=expected,
                )
        pool.decisions[record.decision.value] += 1
        return record

    async def close(self) -> None:
        """Release everything held on the server. Idempotent; safe under cancellation."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.shield(self._teardown())
        finally:
            self.pool.router.forget(self.episode_id)
            self.pool.episodes.pop(self.episode_id, None)

    async def __aenter__(self) -> EpisodeModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------------------

    def _context(self, tools: tuple[str, ...], expected: float) -> PauseContext:
        url = self.conversation.server or next(iter(self.pool.backends))
        return PauseContext(
            context_tokens=len(self.conversation.ids),
            tools=tools,
            expected_pause_s=expected,
            ttl_s=self.pool.estimator.ttl_s(list(tools)),
            pressure=self.pool.pressure(url),
        )

    async def _resume(self) -> float | None:
        """Back from a pause: learn its length, stop the TTL timer, reclaim the hold if it survived."""
        pause_s = None
        if self._paused_at is not None:
            pause_s = time.monotonic() - self._paused_at
            self.pool.estimator.observe(self._paused_tools, pause_s)
            self._paused_at = None
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            self._ttl_task = None
        server = self.conversation.server
        # Also when the session is already detached: a release in progress must finish first.
        if server is not None and self.episode_id in self.pool.budgets[server].holds:
            await self.pool.budgets[server].resume(self.episode_id)
        return pause_s

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
            with contextlib.suppress(BackendError):
                await asyncio.wait_for(self.pool.backends[conv.server].close_session(sid), _CLOSE_TIMEOUT_S)
        self._pending.append(
            RetentionRecord(
                policy=self.pool.policy.name.value,
                decision=RetentionDecision.RELEASE if self._admitted(conv.server) else RetentionDecision.SUSPEND,
                reason=f"released during the pause ({held} tokens): {reason}",
            )
        )
        self.pool.decisions["released_in_pause"] += 1

    def _admitted(self, server: str | None) -> bool:
        """Whether admission control lets this episode hold KV on ``server`` (True when it is off)."""
        admission = self.pool.admissions.get(server) if server is not None else None
        return admission is None or admission.is_admitted(self.episode_id)

    def _suspend_record(self, what: str) -> RetentionRecord:
        return RetentionRecord(
            policy=self.pool.policy.name.value,
            decision=RetentionDecision.SUSPEND,
            reason=f"suspended by admission control {what}: the episodes admitted before this one "
            "need the KV budget to finish; the next turn waits to be readmitted",
        )

    async def _close_session(self, *, rid: str | None = None) -> None:
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

    async def _teardown(self) -> None:
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            self._ttl_task = None
        conv = self.conversation
        if conv.server is not None:
            budget = self.pool.budgets[conv.server]
            hold = budget.holds.get(self.episode_id)
            if hold is not None and hold.releasing is not None:
                with contextlib.suppress(Exception):
                    await hold.releasing
        await self._close_session()
        self._leave_admission()
        self.pool.growth.observe_episode(self._turn)

    def _leave_admission(self) -> None:
        conv = self.conversation
        admission = self.pool.admissions.get(conv.server) if conv.server is not None else None
        if admission is not None:
            admission.leave(self.episode_id)

    async def _open_or_grow(self, backend: Backend, need: int, max_new: int, records: list[RetentionRecord]) -> None:
        """Make sure the turn runs in a session with ``need`` tokens of budget, or in none."""
        pool, conv, policy = self.pool, self.conversation, self.pool.policy
        budget = pool.budgets[backend.url]
        if not (policy.uses_sessions and backend.info.streaming_sessions):
            return
        if conv.session_id is not None and not self._admitted(backend.url):
            # Suspended while its last turn ran, and no pause() since: let go now, then queue.
            await self._close_session()
            records.append(self._suspend_record(f"before turn {self._turn} ({len(conv.ids)} tokens released)"))
        if conv.session_id is None:
            await self._admit(backend.url, need, max_new, records)
        if conv.session_id is not None:
            own = budget.holds.get(self.episode_id)
            value = own.value if own is not None else 0.0
            if not await budget.reserve(
                self.episode_id, need, wait_s=pool.admission_wait_s, preempt=policy.preempts, value=value
            ):
                await self._close_session()
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
        try:
            sid = await backend.open_session(timeout_s=pool.session_timeout_s)
        except BaseException:
            budget.drop(self.episode_id)
            raise
        conv.attach_session(sid)

    async def _admit(self, url: str, need: int, max_new: int, records: list[RetentionRecord]) -> None:
        """Wait for admission control to let this episode hold KV on ``url`` (no-op when it is off)."""
        admission = self.pool.admissions.get(url)
        if admission is None:
            return
        try:
            waited = await admission.admit(
                self.episode_id,
                context=need,
                turns_done=self._turn,
                max_turns=self.max_turns,
                prior_growth=max_new,
                alive=lambda: self.pool.router.servers[url].healthy,
            )
        except AdmissionAbandoned as exc:
            raise BackendUnavailable(url, "", str(exc)) from exc
        if waited > 0:
            self.pool.decisions["queued"] += 1
            records.append(
                RetentionRecord(
                    policy=self.pool.policy.name.value,
                    decision=RetentionDecision.QUEUED,
                    reason=f"waited {waited:.2f} s for admission on {url} (KV budget committed to "
                    "episodes admitted earlier)",
                    wait_s=waited,
                )
            )

    def _denied(self, what: str, budget: Any) -> RetentionRecord:
        self.pool.decisions["admission_denied"] += 1
        return RetentionRecord(
            policy=self.pool.policy.name.value,
            decision=RetentionDecision.DENIED,
            reason=f"KV budget of {budget.server} full ({budget.held}/{budget.capacity} tokens held): "
            f"{what}; this turn runs without a session",
        )

    async def _run_turn(
        self,
        delta: list[int],
        sampling: dict[str, Any],
        max_new: int,
        records: list[RetentionRecord],
        hidden: bool,
    ) -> tuple[GenerateResult, str | None, bool]:
        pool, conv = self.pool, self.conversation
        tried: dict[str, str] = {}
        failover_from: str | None = None
        while True:
            try:
                url = pool.router.pick(self.episode_id, exclude=frozenset(tried))
            except BackendError as exc:
                detail = "; ".join(f"{u}: {why}" for u, why in tried.items())
                raise type(exc)(
                    exc.server, exc.request_id, f"{exc.reason}" + (f" [{detail}]" if detail else "")
                ) from exc
            if conv.server is not None and url != conv.server:
                failover_from = failover_from or conv.server
                if conv.session_id is not None:
                    await self._close_session()
                self._leave_admission()
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
            backend = pool.backends[url]
            try:
                result = await self._call(backend, delta, sampling, max_new, records, hidden)
            except BackendUnavailable as exc:
                if not isinstance(exc, RequestAborted):
                    pool.router.mark_down(url, exc.reason)
                tried[url] = exc.reason
                continue
            return result, failover_from, conv.session_id is not None

    async def _call(
        self,
        backend: Backend,
        delta: list[int],
        sampling: dict[str, Any],
        max_new: int,
        records: list[RetentionRecord],
        hidden: bool,
    ) -> GenerateResult:
        """One server: session admission, then the request with retries and backoff."""
        pool, conv = self.pool, self.conversation
        attempt = 0
        while True:
            need = len(conv.ids) + len(delta) + max_new
            await self._open_or_grow(backend, need, max_new, records)
            ids, session = conv.request(delta)
            rid = f"{self.episode_id}-t{self._turn}-{uuid.uuid4().hex[:8]}"
            outstanding = (len(delta) if session and session.previous_rid else len(ids)) + max_new
            pool.router.begin(backend.url, outstanding)
            try:
                return await backend.generate(
                    ids, sampling_params=sampling, rid=rid, session=session, return_hidden_states=hidden
                )
            except SessionRejected as exc:
                await self._close_session()
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
                    await self._close_session(rid=rid)
                # An abort (no KV room now) clears as running requests finish: be more patient.
                limit = pool.retries + (_ABORT_EXTRA_RETRIES if isinstance(exc, RequestAborted) else 0)
                if attempt >= limit:
                    raise
                await asyncio.sleep(min(pool.backoff_s * 2**attempt, _MAX_BACKOFF_S))
            except BaseException:
                # Cancelled or failed for good: the server must not keep this turn or its session,
                # and an episode that may never come back must not keep others waiting for admission.
                await asyncio.shield(self._close_session(rid=rid))
                self._leave_admission()
                raise
            finally:
                pool.router.end(backend.url, outstanding)
            attempt += 1


__all__ = ["EpisodeCompletion", "EpisodeModel"]
