"""KV accounting: who owns which pool slot, and what happens to a request's KV when it stops running.

The pool (kv_pool.py) hands out slots; the radix tree (radix_cache.py) owns the slots of finished
sequences and evicts unlocked ones; requests lock the prefix they reuse; streaming sessions
(session.py) lock their last turn; top-level ``session_id`` soft references make a prefix evicted
last. The ``CacheManager`` keeps those four consistent for the scheduler, on the scheduler thread.
"""

from __future__ import annotations

import torch

from interleaf.runtime.engine.kv_pool import KVPool
from interleaf.runtime.engine.radix_cache import Node, RadixCache
from interleaf.runtime.engine.request import Req
from interleaf.runtime.engine.session import SessionTable


class CacheManager:
    """The KV pool, the radix tree over it, and the pins on it (sessions, radix-session soft references)."""

    def __init__(self, capacity: int, *, enable_radix: bool = True):
        self.pool = KVPool(capacity)
        self.radix = RadixCache(self.pool, enabled=enable_radix)
        self.sessions = SessionTable(self.radix)
        self._soft_refs: dict[str, list[Node]] = {}
        """Top-level ``session_id`` -> the nodes its finished requests soft-reference."""

    @property
    def capacity(self) -> int:
        """``max_total_num_tokens``."""
        return self.pool.capacity

    @property
    def used_tokens(self) -> int:
        """Slots owned by anyone: running requests, the radix tree (cached or pinned)."""
        return self.pool.capacity - self.pool.available

    @property
    def freeable_tokens(self) -> int:
        """Slots free now or after evicting every unlocked prefix."""
        return self.pool.available + self.radix.evictable_tokens

    # --- admission and allocation ------------------------------------------------------------------
    def admit(self, req: Req) -> int:
        """Lock the longest cached prefix of ``req``'s sequence and point the request at it.

        Returns 0 when admitted; otherwise the number of KV slots the request needs, more than can be
        freed (nothing stays locked and the request is unchanged). The last ``keep`` prompt tokens are
        never matched: the first output needs their logits, hidden-state capture their residuals, prompt
        logprobs (``logprob_start_len``) the logits from that position on.
        """
        fill = req.seq_ids
        keep = max(1, req.capture.last_k if req.capture else 1)
        if req.logprob_start >= 0 and req.retractions == 0:  # prompt logprobs need those positions' logits
            keep = max(keep, len(req.input_ids) - req.logprob_start)
        match = self.radix.match_prefix(fill[: max(0, len(fill) - keep)])
        self.radix.lock(match.node)
        need = len(fill) - match.length
        if need > self.freeable_tokens:
            self.radix.unlock(match.node)
            return need
        req.prefix_node = match.node
        req.slots = match.slots
        req.n_prefix = match.length
        req.prefill_done = match.length
        return 0

    def alloc(self, n: int) -> torch.Tensor | None:
        """``n`` slots, evicting unlocked prefixes if the pool is short; None when even that is not enough."""
        slots = self.pool.alloc(n)
        if slots is None:
            self.radix.evict(n - self.pool.available)
            slots = self.pool.alloc(n)
        return slots

    def free(self, slots: torch.Tensor) -> None:
        """Return slots allocated with ``alloc`` but never used."""
        self.pool.free(slots)

    def no_room_message(self, need: int) -> str:
        """Why a request needing ``need`` more slots can never run as things stand, and what to do."""
        return (
            f"request needs {need} more KV tokens but only {self.freeable_tokens} of max_total_num_tokens="
            f"{self.pool.capacity} can be freed; {self.sessions.held_tokens} tokens are pinned by "
            f"{self.sessions.streaming_count} streaming sessions: close sessions or raise --max-total-tokens"
        )

    # --- a request stops running ---------------------------------------------------------------------
    def release(self, req: Req) -> Node | None:
        """Give the request's KV to the radix tree (evictable) and drop its prefix lock; returns the node
        covering its sequence (None when it had no KV or the tree is disabled). Retraction uses this
        alone: the request resumes later from prompt + output so far, most of it cached."""
        node = None
        n = int(req.slots.numel())
        if n:
            ids = req.seq_ids[:n]
            if self.radix.enabled:
                already, node = self.radix.insert(ids, req.slots)
                if already > req.n_prefix:
                    self.pool.free(req.slots[req.n_prefix : already])
            else:
                self.pool.free(req.slots[req.n_prefix :])
        if req.prefix_node is not None:
            self.radix.unlock(req.prefix_node)
            req.prefix_node = None
        req.slots = torch.empty(0, dtype=torch.int64)
        req.n_prefix = 0
        req.prefill_done = 0
        return node

    def finish(self, req: Req, *, completed: bool) -> None:
        """Release a finished request's KV. A completed streaming-session turn moves the session's pin to
        it, and a completed request with a top-level ``session_id`` soft-references it; an aborted turn
        rolls its session back to the last finished one."""
        ids_with_kv = req.seq_ids[: int(req.slots.numel())]
        node = self.release(req)
        if completed and node is not None:
            if req.session_id is not None:
                self.sessions.finish_turn(req, node, ids_with_kv)
            if req.radix_session_id is not None:
                self.radix.soft_ref(node, +1)
                self._soft_refs.setdefault(req.radix_session_id, []).append(node)
        elif req.session_id is not None:
            self.sessions.roll_back(req)

    # --- sessions ----------------------------------------------------------------------------------
    def close_session(self, sid: str) -> tuple[bool, Req | None]:
        """Drop streaming session ``sid``'s pin and the soft references of radix session ``sid``.
        Returns (whether either existed, the streaming session's turn in flight for the caller to abort)."""
        refs = self._soft_refs.pop(sid, [])
        for node in refs:
            self.radix.soft_ref(node, -1)
        session = self.sessions.close(sid)
        if session is None:
            return bool(refs), None
        return True, session.inflight
