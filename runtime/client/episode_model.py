"""EpisodeModel: one episode's ``AgentModel`` — token-exact turns over a pool of servers.

A turn (``generate``): tokenise the delta once; hold the session, the KV budget and the admission
slot the retention policy wants (:class:`~interleaf.runtime.client.session_hold.SessionHold`); send
only the delta in a held session (full ids otherwise), retrying transient failures and failing over
to another server with a recorded re-prefill (:mod:`interleaf.runtime.client.failover`); commit the
output ids to the :class:`Conversation` and report the engine's cache figures and timings.
``pause`` applies the retention policy; ``close`` (and leaving ``async with``) always closes the
session, also on error and cancellation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interleaf.agents.model import Completion, Constraint
from interleaf.runtime.client.conversation import Conversation
from interleaf.runtime.client.errors import BackendError, PoolClosed
from interleaf.runtime.client.failover import TurnRequest, run_turn
from interleaf.runtime.client.session_hold import SessionHold
from interleaf.telemetry.records import RetentionRecord, TurnTimings

if TYPE_CHECKING:
    # Only for annotations: the pool imports this module, never the reverse.
    from interleaf.runtime.client.pool import BackendPool


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
        self.hold = SessionHold(pool, episode_id, self.conversation, max_turns=max_turns)
        """The episode's session, KV-budget hold and admission slot; decides at each pause."""
        self._closed = False
        self._encoded: tuple[str, list[int]] | None = None
        """The last text tokenised, with its ids: the agent counts a delta's tokens (its budget check)
        just before sending that same delta, and tokenising a first turn costs ~0.5 ms (SmolLM2)."""

    # -- AgentModel ---------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        last = self._encoded
        if last is not None and last[0] == text:
            return last[1]
        ids = self.pool.encode(text)
        self._encoded = (text, ids)
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

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
        if self.pool.closed:
            raise self._pool_closed()
        if self._closed:
            raise BackendError("", "", f"episode {self.episode_id} is closed; open a new one with pool.episode()")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        delta = list(self._encode(delta_text))  # a copy: the conversation keeps it
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
        pause_s = await self.hold.resume()
        records = self.hold.take_pending()
        outcome = await run_turn(self.hold, TurnRequest(delta, sampling, max_new_tokens, return_hidden_states), records)
        result, conv = outcome.result, self.conversation
        recomputed = conv.recomputed(result.prompt_tokens, result.cached_tokens)
        if outcome.failover_from is not None:
            self.pool.reprefill_tokens += recomputed
        conv.commit(delta, result.output_ids, result.request_id)
        self.pool.observe_call(result.server, result.prompt_tokens - result.cached_tokens + result.completion_tokens)
        self.hold.turn_done(result.server, added=len(delta) + result.completion_tokens)
        ttft = result.ttft_s
        e2e = result.server_e2e_s if result.server_e2e_s is not None else result.e2e_s
        return EpisodeCompletion(
            text=result.text,
            delta_ids=delta,
            output_ids=result.output_ids,
            finish_reason=result.finish_reason,
            request_id=result.request_id,
            server=result.server,
            cache=result.cache_figures(recomputed),
            timings=TurnTimings(
                queue_s=result.queue_s or 0.0,
                ttft_s=ttft or 0.0,
                decode_s=max(0.0, e2e - ttft) if ttft is not None else 0.0,
                e2e_s=result.e2e_s,
            ),
            hidden_states=result.hidden_states,
            retention=records,
            failover_from=outcome.failover_from,
            in_session=outcome.in_session,
            pause_s=pause_s,
        )

    async def pause(self, tool_names: list[str]) -> RetentionRecord:
        """Apply the retention policy for a pause over ``tool_names``; the record says what was done."""
        if self.pool.closed:
            raise self._pool_closed()
        if self._closed:
            raise BackendError("", "", f"episode {self.episode_id} is closed; pause() after close()")
        return await self.hold.pause(tool_names)

    def _pool_closed(self) -> PoolClosed:
        server = self.conversation.server or ",".join(self.pool.backends)
        return PoolClosed(server, "", f"episode {self.episode_id}: the pool was closed (pool.aclose()); open a new one")

    async def close(self) -> None:
        """Release everything held on the server. Idempotent; safe under cancellation."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.shield(self.hold.teardown())
        finally:
            self.pool.episode_closed(self.episode_id)

    async def __aenter__(self) -> EpisodeModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["EpisodeCompletion", "EpisodeModel"]
