"""Router choice: sticky affinity, least outstanding tokens, failover, clear errors (logic only)."""

from __future__ import annotations

import asyncio

import pytest

from interleaf.runtime.client import NoHealthyServer, PoolClosed, ServerDown
from interleaf.runtime.client.router import Router


def test_new_episodes_go_to_least_outstanding_then_stick() -> None:
    router = Router(["http://a", "http://b"])
    router.begin("http://a", 500)
    assert router.pick("e1") == "http://b"
    router.begin("http://b", 2000)
    assert router.pick("e2") == "http://a"
    # Sticky: e1 stays on b although b is now the busier one.
    assert router.pick("e1") == "http://b"
    router.end("http://b", 2000)
    assert router.stats()["http://b"]["outstanding_tokens"] == 0
    assert router.stats()["http://b"]["episodes"] == 1


def test_failover_moves_episode_and_counts_it() -> None:
    router = Router(["http://a", "http://b"])
    assert router.pick("e1") == "http://a"
    router.mark_down("http://a", "connection refused")
    assert router.pick("e1") == "http://b"
    assert router.failovers == 1
    router.mark_up("http://a")
    assert router.pick("e1") == "http://b"  # stays where its KV now is


def test_no_healthy_server_names_every_server_and_why() -> None:
    router = Router(["http://a", "http://b"])
    router.mark_down("http://a", "connection refused")
    router.mark_down("http://b", "/health timed out")
    # Everything marked down but not yet tried by this request: the request probes one anyway.
    assert router.pick("e8") in ("http://a", "http://b")
    with pytest.raises(NoHealthyServer) as info:
        router.pick("e9", exclude=frozenset({"http://a", "http://b"}))
    message = str(info.value)
    assert "episode e9" in message and "http://a: down (connection refused)" in message
    assert "http://b: down (/health timed out)" in message


def test_router_needs_servers() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        Router([])


def test_turns_waiting_for_admission_count_as_queued_work() -> None:
    router = Router(["http://a", "http://b"])
    router.begin("http://b", 300)
    with router.waiting("http://a", 1000):
        # a's only turn waits on the client for admission: a is not idle, b is the lighter server.
        assert router.pick("e1") == "http://b"
        assert router.stats()["http://a"]["waiting_tokens"] == 1000
    assert router.stats()["http://a"]["waiting_tokens"] == 0
    assert router.pick("e2") == "http://a"


async def test_a_server_declared_down_cuts_its_flights_short_only_with_somewhere_to_go() -> None:
    router = Router(["http://a", "http://b"])
    started = asyncio.Event()

    async def attempt(url: str) -> str:
        async with router.flight(url) as flight:
            flight.rid = "r1"
            started.set()
            await asyncio.Event().wait()  # a request that never answers
        return "answered"

    task = asyncio.create_task(attempt("http://a"))
    await started.wait()
    router.mark_down("http://a", "/health failed: False", cut_in_flight=True)
    with pytest.raises(ServerDown, match=r"server http://a request r1: declared down while the turn was in flight"):
        await task
    assert router.servers["http://a"].flights == set()

    # Nowhere to go: b is down too, so the turn on a keeps its chance there.
    router.mark_down("http://b", "/health failed: False")
    started.clear()
    task = asyncio.create_task(attempt("http://a"))
    await started.wait()
    router.cut_in_flight("http://a", "/health failed: False")
    assert not task.done() and len(router.servers["http://a"].flights) == 1
    router.cut_all("the pool was closed")
    with pytest.raises(PoolClosed, match="the pool was closed"):
        await task


async def test_a_cut_does_not_leak_into_the_caller() -> None:
    """The flight's cancellation stays inside its block: the task goes on after handling the error."""
    router = Router(["http://a", "http://b"])

    async def attempt() -> None:
        async with router.flight("http://a"):
            router.mark_down("http://a", "gone", cut_in_flight=True)
            await asyncio.sleep(3600)

    with pytest.raises(ServerDown):
        await attempt()
    await asyncio.sleep(0)  # no CancelledError left pending on this task
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
