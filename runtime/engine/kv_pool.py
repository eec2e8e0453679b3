"""Token-slot allocator for the KV pool.

Every token whose keys/values are computed lives in one slot of a fixed pool of
``max_total_num_tokens`` slots (SGLang's token_to_kv_pool). Slot 0 is a reserved all-zero
padding slot, so real slots are 1..capacity. The allocator is independent of the tensors so the
simulated executor can use the same accounting with no memory behind it.

Its own memory follows the slots in use, not the capacity: slots never handed out are one counter
(the next fresh slot), and only returned slots are kept in a stack that grows as they come back. A
simulated oracle server is sized to hold every agent's context (tens of millions of slots at
10,000 agents), and 64 such free lists written out in full took 25 GB.
"""

from __future__ import annotations

import torch


class KVPool:
    """Free-list allocator over slots 1..capacity: returned slots first (last in, first out), then
    fresh ones in ascending order."""

    def __init__(self, capacity: int):
        if capacity < 16:
            raise ValueError(f"max_total_num_tokens must be at least 16, got {capacity}")
        self.capacity = capacity
        self._next_fresh = 1  # slots next_fresh..capacity have never been allocated
        self._returned = torch.empty(0, dtype=torch.int64)  # a stack; only [:_n_returned] is live
        self._n_returned = 0

    @property
    def available(self) -> int:
        """Slots not owned by anyone (the radix cache's evictable slots are NOT counted here)."""
        return self._n_returned + self.capacity + 1 - self._next_fresh

    def alloc(self, n: int) -> torch.Tensor | None:
        """``n`` free slots, or None when fewer are free (the caller evicts and retries)."""
        if n > self.available:
            return None
        reused = min(n, self._n_returned)
        top = self._n_returned
        out = self._returned[top - reused : top].clone()
        self._n_returned -= reused
        fresh = n - reused
        if fresh:
            new = torch.arange(self._next_fresh, self._next_fresh + fresh, dtype=torch.int64)
            self._next_fresh += fresh
            out = new if reused == 0 else torch.cat((out, new))
        return out

    def free(self, slots: torch.Tensor) -> None:
        """Return slots to the pool."""
        n = int(slots.numel())
        if n == 0:
            return
        if self.available + n > self.capacity:
            raise RuntimeError("KV pool double free: more slots returned than allocated")
        end = self._n_returned + n
        if end > self._returned.numel():  # grow geometrically, never past what could be returned
            grown = torch.empty(min(self.capacity, max(end, 2 * self._returned.numel(), 1024)), dtype=torch.int64)
            grown[: self._n_returned] = self._returned[: self._n_returned]
            self._returned = grown
        self._returned[self._n_returned : end] = slots.reshape(-1)
        self._n_returned = end
