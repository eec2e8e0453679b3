"""Router choice: sticky affinity, least outstanding tokens, failover, clear errors (logic only)."""

from __future__ import annotations

import pytest

from interleaf.runtime.client import NoHealthyServer
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
