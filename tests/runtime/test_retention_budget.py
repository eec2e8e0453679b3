"""KV budget accounting and admission control (logic only; fake session closes)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from interleaf.runtime.client.kv_budget import HoldState, KVBudget
from tests.waiting import wait_until_async, wait_until_started


async def test_reserve_grow_shrink_and_refuse_over_capacity() -> None:
    budget = KVBudget("s", 100)
    assert await budget.reserve("a", 60, wait_s=0, preempt=False)
    assert await budget.reserve("a", 80, wait_s=0, preempt=False)  # growth within room
    assert not await budget.reserve("b", 30, wait_s=0, preempt=False)
    budget.shrink("a", 50)
    assert await budget.reserve("b", 30, wait_s=0, preempt=False)
    assert budget.held == 80 and budget.peak == 80
    assert not await budget.reserve("c", 101, wait_s=5, preempt=True)  # can never fit: refused at once
    assert budget.refusals == 2


async def test_waiter_is_admitted_when_a_hold_is_dropped() -> None:
    budget = KVBudget("s", 100)
    await budget.reserve("a", 90, wait_s=0, preempt=False)
    waiter = asyncio.ensure_future(budget.reserve("b", 50, wait_s=30, preempt=False))
    await wait_until_started(waiter, message="reserve('b') to run up to waiting for room")
    assert not waiter.done()
    budget.drop("a")
    assert await waiter
    assert budget.held == 50


async def test_preemption_releases_lowest_value_paused_hold_first() -> None:
    budget = KVBudget("s", 100)
    closed: list[str] = []

    def closer(key: str):
        async def close(reason: str) -> None:
            await asyncio.sleep(0.01)
            closed.append(key)
            assert "preempted" in reason

        return close

    for key, value in (("cheap", 1.0), ("dear", 50.0)):
        await budget.reserve(key, 40, wait_s=0, preempt=False)
        budget.pause(key, value=value, on_release=closer(key))
    assert await budget.reserve("new", 50, wait_s=0, preempt=True, value=10.0)
    assert closed == ["cheap"]
    assert set(budget.holds) == {"dear", "new"}
    # A requester worth less than every paused hold preempts nothing and is refused.
    assert not await budget.reserve("poor", 20, wait_s=0, preempt=True, value=0.5)
    assert closed == ["cheap"]


async def test_make_room_releases_paused_holds_whatever_their_value_until_enough_is_freed() -> None:
    # The server aborted a request for lack of KV: this budget's own paused sessions go, cheapest first,
    # until the request's tokens are on the way — even holds worth more than the requester (it has none).
    budget = KVBudget("s", 100)
    reasons: dict[str, str] = {}

    def closer(key: str):
        async def close(reason: str) -> None:
            reasons[key] = reason

        return close

    for key, value in (("cheap", 1.0), ("dear", 50.0), ("dearest", 90.0)):
        await budget.reserve(key, 30, wait_s=0, preempt=False)
        budget.pause(key, value=value, on_release=closer(key))
    await budget.reserve("me", 10, wait_s=0, preempt=False)  # the requester's own hold is never released
    await asyncio.wait(budget.make_room(45, exclude="me", reason="released for an aborted request"))
    assert set(reasons) == {"cheap", "dear"} and "released for an aborted request (s)" in reasons["dear"]
    assert set(budget.holds) == {"dearest", "me"} and budget.held == 40
    assert budget.make_room(1000, exclude="me", reason="x") and "me" in budget.holds


async def test_an_active_hold_of_another_conversation_is_seen_and_its_pause_wakes_the_waiter() -> None:
    # An aborted request whose KV is pinned by this pool's own turn in flight waits for that turn to pause
    # (then make_room can release it) or to end, rather than give up after its retries.
    budget = KVBudget("s", 100)

    async def noop(reason: str) -> None:
        return None

    await budget.reserve("running", 60, wait_s=0, preempt=False)
    assert budget.pinned_besides("me") and not budget.pinned_besides("running")
    waiter = asyncio.ensure_future(budget.paused_or_dropped(30.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.pause("running", value=1.0, on_release=noop)  # its turn ended, its tool runs: releasable now
    await asyncio.wait_for(waiter, 1.0)
    assert not budget.pinned_besides("me")
    waiter = asyncio.ensure_future(budget.paused_or_dropped(30.0))
    await asyncio.sleep(0)
    budget.drop("running")
    await asyncio.wait_for(waiter, 1.0)
    await budget.paused_or_dropped(0.01)  # nothing happens: returns after the timeout


async def _hold_being_released() -> tuple[KVBudget, asyncio.Event]:
    """A 100-token budget whose 40-token hold "a" is releasing; its session close waits for ``gate``."""
    budget = KVBudget("s", 100)
    gate = asyncio.Event()

    async def slow_close(reason: str) -> None:
        await gate.wait()

    await budget.reserve("a", 40, wait_s=0, preempt=False)
    budget.pause("a", value=1.0, on_release=slow_close)
    budget.release_paused("a", "ttl expired")
    return budget, gate


async def test_resume_of_a_hold_being_released_waits_and_reports_it_gone() -> None:
    budget, gate = await _hold_being_released()
    assert budget.holds["a"].state is HoldState.RELEASING
    # A session being closed pins KV that comes free on its own: an aborted request past its retries waits.
    assert budget.pinned_besides("me") and not budget.pinned_besides("a")
    resumed = asyncio.ensure_future(budget.resume("a"))
    await wait_until_started(resumed, message="resume('a') to run up to waiting for the release")
    assert not resumed.done() and budget.held == 40  # tokens count until the close is confirmed
    gate.set()
    assert await resumed is False
    assert budget.held == 0


async def test_many_concurrent_episodes_never_exceed_and_never_deadlock() -> None:
    budget = KVBudget("s", 1000)
    rng = random.Random(7)
    observed: list[int] = []

    async def episode(i: int) -> None:
        key = f"e{i}"
        size = 0
        for _turn in range(5):
            if key in budget.holds and not await budget.resume(key):
                size = 0
            size += rng.randint(50, 300)
            ok = await budget.reserve(key, size, wait_s=0.02, preempt=True, value=float(size))
            observed.append(budget.held)
            await asyncio.sleep(rng.random() / 100)
            if ok:
                budget.shrink(key, size - 10)

                async def close(reason: str) -> None:
                    await asyncio.sleep(0.001)

                budget.pause(key, value=rng.random() * 100, on_release=close)
            await asyncio.sleep(rng.random() / 50)
        if key in budget.holds:
            await budget.resume(key)
            budget.drop(key)

    await asyncio.wait_for(asyncio.gather(*(episode(i) for i in range(32))), 30)
    assert max(observed) <= 1000 and budget.peak <= 1000
    assert budget.held == 0 and not budget.holds


async def test_a_new_reservation_waits_for_the_old_hold_release_and_is_not_dropped_by_it() -> None:
    budget, gate = await _hold_being_released()
    old_release = budget.holds["a"].releasing
    assert old_release is not None
    # The episode comes back while its old session is still closing and asks for a new one.
    again = asyncio.ensure_future(budget.reserve("a", 60, wait_s=0, preempt=False))
    await wait_until_started(again, message="reserve('a') to run up to waiting for the old release")
    assert not again.done()
    gate.set()
    assert await again
    # Only the old release could drop the new hold: once it has run to its end, it never will.
    await wait_until_async(old_release.done, message="the old hold's release to finish", timeout_s=5)
    assert budget.holds["a"].tokens == 60 and budget.held == 60  # the old release did not drop it
    budget.pause("a", value=1.0, on_release=_close_now)


async def _close_now(reason: str) -> None:
    return None


async def test_overrunning_pauses_go_first_and_equals_do_not_churn() -> None:
    budget = KVBudget("s", 120)
    closed: list[str] = []

    def closer(key: str):
        async def close(reason: str) -> None:
            closed.append(key)

        return close

    for key, value, expected in (("overdue", 50.0, 1.0), ("fresh", 6.0, 100.0), ("steady", 20.0, 0.0)):
        await budget.reserve(key, 40, wait_s=0, preempt=False)
        budget.pause(key, value=value, on_release=closer(key), expected_s=expected)
    budget.holds["overdue"].since -= 99.0  # paused 100x longer than predicted: now worth ~0.5
    assert await budget.reserve("new", 40, wait_s=0, preempt=True, value=10.0)
    assert closed == ["overdue"]
    # "fresh" (worth ~6) is more than half of the requester's 10: no trade of near-equals.
    assert not await budget.reserve("next", 40, wait_s=0, preempt=True, value=10.0)
    assert closed == ["overdue"]


@pytest.mark.parametrize("capacity", [-1, math.nan, 10.5, True])
def test_a_budget_is_a_whole_number_of_tokens(capacity) -> None:
    with pytest.raises(ValueError, match=r"KVBudget capacity for s must be an int >= 0 tokens"):
        KVBudget("s", capacity)
