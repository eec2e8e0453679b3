"""Token-slot allocator for the KV pool.

Every token whose keys/values are computed lives in one slot of a fixed pool of
``max_total_num_tokens`` slots (SGLang's token_to_kv_pool). Slot 0 is a reserved all-zero
padding slot, so real slots are 1..capacity. The allocator is independent of the tensors so the
simulated executor can use the same accounting with no memory behind it.
"""

from __future__ import annotations

import torch


class KVPool:
    """Free-list allocator over slots 1..capacity."""

    def __init__(self, capacity: int):
        if capacity < 16:
            raise ValueError(f"max_total_num_tokens must be at least 16, got {capacity}")
        self.capacity = capacity
        self._free = torch.arange(1, capacity + 1, dtype=torch.int64)
        self._n_free = capacity

    @property
    def available(self) -> int:
        """Slots not owned by anyone (the radix cache's evictable slots are NOT counted here)."""
        return self._n_free

    def alloc(self, n: int) -> torch.Tensor | None:
        """``n`` free slots, or None when fewer are free (the caller evicts and retries)."""
        if n > self._n_free:
            return None
        out = self._free[self._n_free - n : self._n_free].clone()
        self._n_free -= n
        return out

    def free(self, slots: torch.Tensor) -> None:
        """Return slots to the pool."""
        n = int(slots.numel())
        if n == 0:
            return
        if self._n_free + n > self.capacity:
            raise RuntimeError("KV pool double free: more slots returned than allocated")
        self._free[self._n_free : self._n_free + n] = slots
        self._n_free += n
