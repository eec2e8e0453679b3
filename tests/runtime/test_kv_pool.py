"""The slot allocator: every slot handed out once until returned, exhaustion is None, a double free
raises, and its memory follows the slots in use rather than the capacity."""

from __future__ import annotations

import pytest
import torch

from interleaf.runtime.engine.kv_pool import KVPool


def test_slots_are_unique_reused_after_free_and_exhaustion_is_none() -> None:
    pool = KVPool(64)
    a, b = pool.alloc(40), pool.alloc(24)
    assert a is not None and b is not None and pool.available == 0
    assert sorted(torch.cat((a, b)).tolist()) == list(range(1, 65))  # slot 0 is the padding slot
    assert pool.alloc(1) is None
    pool.free(a[:10])
    c = pool.alloc(10)
    assert c is not None and sorted(c.tolist()) == sorted(a[:10].tolist())
    pool.free(b)
    mixed = pool.alloc(20)  # returned slots only; none fresh are left
    assert mixed is not None and set(mixed.tolist()) <= set(b.tolist()) and pool.available == 4


def test_an_allocation_takes_returned_slots_then_fresh_ones() -> None:
    pool = KVPool(100)
    first = pool.alloc(10)
    assert first is not None
    pool.free(first[:3])
    out = pool.alloc(5)
    assert out is not None and len(set(out.tolist())) == 5
    assert set(first[:3].tolist()) <= set(out.tolist()) and pool.available == 100 - 12


def test_a_double_free_raises() -> None:
    pool = KVPool(16)
    slots = pool.alloc(16)
    assert slots is not None
    pool.free(slots)
    with pytest.raises(RuntimeError, match="double free"):
        pool.free(slots[:1])


def test_memory_follows_the_slots_in_use_not_the_capacity() -> None:
    pool = KVPool(10**12)  # an oracle's "holds everything": no free list of that size is written out
    slots = pool.alloc(5_000)
    assert slots is not None
    pool.free(slots)
    assert pool._returned.numel() < 20_000 and pool.available == 10**12
