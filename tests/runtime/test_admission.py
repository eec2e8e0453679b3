"""Episode admission control (logic only; the engine-backed runs are in test_backend_engine.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from interleaf.runtime.client.admission import AdmissionAbandoned, EpisodeAdmission, GrowthEstimate
from tests.waiting import wait_until_async


def test_growth_estimate_prior_then_means_and_remaining_turns() -> None:
    growth = GrowthEstimate()
    assert growth.per_turn(prior=64) == 64.0
    assert growth.remaining_turns(2, max_turns=6) == 4
    assert growth.remaining_turns(7, max_turns=6) == 0
    assert growth.remaining_turns(2, max_turns=None) == 1.0  # nothing finished yet: one more turn
    growth.observe_turn(400)
    growth.observe_turn(600)
    assert growth.per_turn(prior=64) == 500.0
    growth.observe_episode(5)
    growth.observe_episode(7)
    growth.observe_episode(0)  # an episode that never ran a turn says nothing
    assert growth.remaining_turns(2, max_turns=None) == 4.0
    assert growth.remaining_turns(9, max_turns=None) == 1.0
    assert growth.remaining_turns(2, max_turns=12) == 4.0  # learned: episodes end before their limit
    assert growth.remaining_turns(2, max_turns=5) == 3  # never beyond the limit


async def _admit(adm: EpisodeAdmission, key: str, context: int, done: int = 0, max_turns: int | None = 3) -> float:
    return await adm.admit(key, context=context, turns_done=done, max_turns=max_turns, prior_growth=100)


async def _queued(adm: EpisodeAdmission, waits: int) -> None:
    """Wait until ``waits`` admit() calls in all have parked in the queue (stats' admission_waits)."""
    await wait_until_async(
        lambda: adm.stats()["admission_waits"],
        until=lambda n: n >= waits,
        message=f"{waits} admit() calls to queue for admission",
        timeout_s=5,
    )


async def test_first_come_first_served_while_the_projections_fit() -> None:
    adm = EpisodeAdmission("s", capacity=1000, growth=GrowthEstimate())
    # Each projects 200 + 2 remaining turns x 100 = 400.
    assert await _admit(adm, "a", 200) == 0.0
    assert await _admit(adm, "b", 200) == 0.0
    assert adm.committed() == 800
    waiter = asyncio.ensure_future(_admit(adm, "c", 200))
    late = asyncio.ensure_future(_admit(adm, "d", 100))  # would fit (300) but must not overtake c
    await _queued(adm, 2)
    assert not waiter.done() and not late.done()
    assert adm.stats()["waiting"] == 2
    adm.leave("a")
    waited = await asyncio.wait_for(waiter, 2)
    assert waited > 0 and adm.is_admitted("c")
    assert not late.done(), "d (300) does not fit beside b and c (800)"
    adm.leave("b")
    await asyncio.wait_for(late, 2)
    assert adm.is_admitted("d") and adm.stats()["admission_waits"] == 2


async def test_growth_overrun_suspends_the_latest_admitted_and_readmits_in_order() -> None:
    suspended: list[str] = []
    growth = GrowthEstimate()
    adm = EpisodeAdmission("s", capacity=3000, growth=growth, on_suspend=lambda key, why: suspended.append(key))
    for key in "abcd":
        await _admit(adm, key, 300, max_turns=4)  # 300 + 3 x 100 = 600 each: 2,400 fits
    assert len(adm.admitted) == 4
    growth.observe_turn(500)  # turns are five times bigger than the prior guessed
    adm.update("a", context=800, turns_done=2)  # a: 800 + 2 x 500 = 1,800; others 300 + 3 x 500 = 1,800
    assert suspended == ["d", "c", "b"], "most recently admitted go first, until the rest fits"
    assert list(adm.admitted) == ["a"] and adm.stats()["suspensions"] == 3
    b = asyncio.ensure_future(_admit(adm, "b", 300, done=1, max_turns=4))
    c = asyncio.ensure_future(_admit(adm, "c", 300, done=1, max_turns=4))
    await _queued(adm, 2)
    assert not b.done() and not c.done()
    adm.leave("a")
    await asyncio.wait_for(b, 2)
    await asyncio.wait_for(c, 0.5)  # woken with b by the same change, not by the 1 s recheck
    # b projects 300 + 2 x 500 = 1,300; c the same: both fit in 3,000, in their original order.
    assert adm.is_admitted("b") and adm.is_admitted("c") and c.done()
    assert not adm.is_admitted("d")


async def test_head_is_admitted_alone_even_when_it_is_larger_than_the_budget() -> None:
    adm = EpisodeAdmission("s", capacity=100, growth=GrowthEstimate())
    assert await _admit(adm, "huge", 5000) == 0.0  # progress: nothing else is admitted
    blocked = asyncio.ensure_future(_admit(adm, "next", 10))
    await _queued(adm, 1)
    assert not blocked.done()
    adm.leave("huge")
    await asyncio.wait_for(blocked, 2)


async def test_cancelled_waiter_leaves_the_queue_and_dead_server_abandons() -> None:
    adm = EpisodeAdmission("s", capacity=500, growth=GrowthEstimate())
    await _admit(adm, "a", 400)
    waiter = asyncio.ensure_future(_admit(adm, "b", 400))
    await _queued(adm, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert adm.stats()["waiting"] == 0
    alive = True
    waiting = asyncio.ensure_future(
        adm.admit("c", context=400, turns_done=0, max_turns=1, prior_growth=0, alive=lambda: alive)
    )
    await _queued(adm, 2)
    alive = False
    with pytest.raises(AdmissionAbandoned, match="server is down"):
        await asyncio.wait_for(waiting, 5)
    assert adm.stats()["waiting"] == 0


async def test_overcommit_admits_past_the_budget_by_its_factor() -> None:
    for bad in (0, float("nan"), float("inf")):  # NaN passed a ``<= 0`` check and admitted nobody
        with pytest.raises(ValueError, match="overcommit"):
            EpisodeAdmission("s", capacity=1000, growth=GrowthEstimate(), overcommit=bad)
    adm = EpisodeAdmission("s", capacity=1000, growth=GrowthEstimate(), overcommit=1.5)
    for key in "abc":  # 400 each: 1,200 <= 1,500
        assert await _admit(adm, key, 200) == 0.0
    waiter = asyncio.ensure_future(_admit(adm, "d", 200))  # 1,600 > 1,500
    await _queued(adm, 1)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_deferral_on_a_crowded_server_lets_only_the_head_of_the_queue_run_and_keeps_places() -> None:
    adm = EpisodeAdmission("s", capacity=1000, growth=GrowthEstimate(), kv_capacity=1000)
    crowded = {"now": False}

    async def admit(key: str) -> float:
        return await adm.admit(
            key, context=200, turns_done=0, max_turns=3, prior_growth=100, crowded=lambda: crowded["now"]
        )

    assert await admit("a") == 0.0 and await admit("b") == 0.0  # 2 x 400 of 1000
    # Not admitted, but the server is not crowded: returns at once, not admitted, still queued.
    assert await admit("c") == 0.0
    assert not adm.is_admitted("c") and adm.stats()["waiting"] == 1 and adm.stats()["admission_waits"] == 0
    crowded["now"] = True
    assert await admit("c") == 0.0  # crowded, but c is the head of the queue: it still runs without a session
    # d's context does not fit beside c's in the 200 KV tokens the admitted projections leave free: d waits.
    late = asyncio.ensure_future(admit("d"))
    await _queued(adm, 1)
    assert adm.at_head("c") and not adm.at_head("d") and not late.done()
    adm.leave("a")  # room for one: c (earlier) is admitted, and d, now the head, runs without a session
    assert adm.is_admitted("c")
    assert await asyncio.wait_for(late, 2) >= 0.0
    assert not adm.is_admitted("d") and "d" in adm.waiting
    crowded["now"] = False
    assert await admit("e") == 0.0 and not adm.at_head("e")  # not crowded: every waiter runs, wherever it is


async def test_on_a_crowded_server_a_waiter_that_fits_in_one_prefill_chunk_runs_without_a_session() -> None:
    # The server prefills 500 tokens per iteration. a and b are admitted (2 x 400 of 1000); c heads the queue;
    # d (projected 200 + 2 x 100 = 400 tokens) is not at the head but fits in one chunk: re-prefilling it is one
    # iteration, so it runs now rather than wait; f (600 + 200 = 800) does not fit and waits.
    adm = EpisodeAdmission("s", capacity=1000, growth=GrowthEstimate(), kv_capacity=1000, one_chunk=500)

    async def admit(key: str, context: int = 200) -> float:
        return await adm.admit(key, context=context, turns_done=0, max_turns=3, prior_growth=100, crowded=lambda: True)

    assert await admit("a") == 0.0 and await admit("b") == 0.0
    assert await admit("c", context=600) == 0.0 and adm.at_head("c")
    assert await admit("d") == 0.0 and not adm.at_head("d") and not adm.is_admitted("d")
    late = asyncio.ensure_future(admit("f", context=600))
    await _queued(adm, 1)
    assert not late.done() and list(adm.waiting) == ["c", "d", "f"]
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late
