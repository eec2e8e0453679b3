"""An episode's turns against in-memory servers: retries, a refused session resent, failover (logic only).

The same paths against the real engine (a killed server, the re-prefill on the survivor) are
``test_backend_engine.py::test_killed_server_fails_over_with_recorded_reprefill``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interleaf.runtime.client import (
    BackendPool,
    BackendUnavailable,
    GenerateResult,
    PoolClosed,
    ServerInfo,
    ServerMetrics,
    SessionRejected,
    SessionTurn,
)
from interleaf.telemetry.records import RetentionDecision

_OUTPUT = [7, 8]


class _CharTokenizer:
    """One token per character."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


class _FakeServer:
    """A server with streaming sessions that answers every request with the same two tokens."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.info = ServerInfo(url=url, model_path="fake", max_total_num_tokens=10_000, streaming_sessions=True)
        self.down = False
        self.fail_next = 0
        """Requests to fail with BackendUnavailable before answering again."""
        self.sessions: dict[str, int] = {}
        """Open session id -> tokens it holds."""
        self.requests: list[tuple[list[int], SessionTurn | None]] = []
        self.hang: asyncio.Event | None = None
        """When set to an event: ``generate`` waits for it (a hung server) after noting it started."""
        self.started = asyncio.Event()
        """A ``generate`` call has begun (set on every call)."""
        self.healthy = True
        """What ``/health`` answers, apart from ``down``."""
        self.aborted: list[str] = []
        self.abort_seen = asyncio.Event()

    async def generate(
        self,
        input_ids: list[int],
        *,
        sampling_params: dict[str, Any],
        rid: str,
        session: SessionTurn | None = None,
        **_: Any,
    ) -> GenerateResult:
        if self.down or self.fail_next:
            self.fail_next = max(0, self.fail_next - 1)
            raise BackendUnavailable(self.url, rid, "connection refused")
        self.started.set()
        if self.hang is not None:
            await self.hang.wait()
        if session is not None and session.session_id not in self.sessions:
            raise SessionRejected(self.url, rid, f"unknown session {session.session_id}")
        self.requests.append((list(input_ids), session))
        cached = self.sessions[session.session_id] if session is not None and session.previous_rid else 0
        prompt = cached + len(input_ids)
        if session is not None:
            self.sessions[session.session_id] = prompt + len(_OUTPUT)
        return GenerateResult(
            text="ok",
            output_ids=list(_OUTPUT),
            finish_reason="stop",
            request_id=rid,
            server=self.url,
            prompt_tokens=prompt,
            cached_tokens=cached,
            completion_tokens=len(_OUTPUT),
            e2e_s=0.001,
        )

    async def open_session(self, *, timeout_s: float) -> str:
        if self.down:
            raise BackendUnavailable(self.url, "", "connection refused")
        sid = f"s{len(self.requests)}-{len(self.sessions)}"
        self.sessions[sid] = 0
        return sid

    async def close_session(self, session_id: str) -> None:
        if self.down:
            raise BackendUnavailable(self.url, "", "connection refused")
        self.sessions.pop(session_id, None)

    async def abort(self, rid: str) -> None:
        self.aborted.append(rid)
        self.abort_seen.set()

    async def health(self) -> bool:
        return self.healthy and not self.down

    async def metrics(self) -> ServerMetrics | None:
        return None

    async def aclose(self) -> None:
        return None


async def _until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition()`` on the event loop until it holds; fail naming ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.01)


def _pool(*servers: _FakeServer, **options: Any) -> BackendPool:
    return BackendPool(list(servers), retention="session", tokenizer=_CharTokenizer(), backoff_s=0.0, **options)


async def test_a_transient_failure_is_retried_on_the_same_server() -> None:
    server = _FakeServer("http://a")
    pool = _pool(server)
    async with pool.episode("retry") as model:
        await model.generate("hello", max_new_tokens=2)
        await model.pause(["search"])
        server.fail_next = 2  # within retries=2
        out = await model.generate(" again", max_new_tokens=2)
        assert out.server == "http://a" and out.failover_from is None
        # The failed attempts gave their session up; the answer came in a fresh one, with the full ids.
        sent, session = server.requests[-1]
        assert out.in_session and session is not None and session.previous_rid is None
        assert sent == model.conversation.turn_prompt(1)
    assert pool.stats()["servers"]["http://a"]["healthy"] is True
    assert server.sessions == {} and pool.stats()["servers"]["http://a"]["held_tokens"] == 0
    await pool.aclose()


async def test_a_refused_session_is_recorded_and_the_turn_resent_with_the_full_ids() -> None:
    server = _FakeServer("http://a")
    pool = _pool(server)
    async with pool.episode("reaped") as model:
        await model.generate("hello", max_new_tokens=2)
        assert (await model.pause(["search"])).decision is RetentionDecision.HOLD
        server.sessions.clear()  # the server reaped the session during the pause
        out = await model.generate(" again", max_new_tokens=2)
        assert [r.decision for r in out.retention] == [RetentionDecision.RELEASE]
        assert "session refused by http://a" in out.retention[0].reason
        sent, session = server.requests[-1]
        assert sent == model.conversation.turn_prompt(1)  # full ids, in a fresh session
        assert session is not None and session.previous_rid is None and out.in_session
    await pool.aclose()


async def test_a_failed_server_is_left_for_another_with_a_recorded_reprefill() -> None:
    a, b = _FakeServer("http://a"), _FakeServer("http://b")
    pool = _pool(a, b, retries=0)
    async with pool.episode("moved") as model:
        first = await model.generate("hello", max_new_tokens=2)
        doomed, survivor = (a, b) if first.server == a.url else (b, a)
        await model.pause(["search"])
        doomed.down = True
        second = await model.generate(" again", max_new_tokens=2)
        assert second.server == survivor.url and second.failover_from == doomed.url
        failover = [r for r in second.retention if "failover" in r.reason]
        assert len(failover) == 1 and doomed.url in failover[0].reason
        assert failover[0].decision is RetentionDecision.RELEASE
        # The survivor had nothing: everything the doomed server had computed is prefilled again.
        assert second.cache.recomputed_tokens == len("hello") + len(_OUTPUT) - 1
        assert survivor.requests[-1][0] == model.conversation.turn_prompt(1)
        third = await model.generate(" more", max_new_tokens=2)
        assert third.server == survivor.url and third.failover_from is None
        assert third.cache.recomputed_tokens == 0 and third.in_session
    stats = pool.stats()
    assert stats["failovers"] == 1 and stats["decisions"]["failover"] == 1
    assert stats["reprefill_tokens"] == second.cache.recomputed_tokens
    assert stats["servers"][doomed.url]["healthy"] is False
    assert all(s["held_tokens"] == 0 for s in stats["servers"].values()) and survivor.sessions == {}
    await pool.aclose()


async def test_an_episode_cancelled_while_its_session_opens_closes_the_session_the_server_opened() -> None:
    """The server answers /open_session after the caller was cancelled: the session must not be left
    pinning KV (nobody would know its id)."""

    opening = asyncio.Event()

    class SlowOpen(_FakeServer):
        async def open_session(self, *, timeout_s: float) -> str:
            async def on_the_server() -> str:  # runs to its end whatever happens to the client
                await asyncio.sleep(0.2)
                return await _FakeServer.open_session(self, timeout_s=timeout_s)

            opening.set()
            return await asyncio.shield(asyncio.ensure_future(on_the_server()))

    server = SlowOpen("http://a")
    pool = _pool(server)

    async def episode() -> None:
        async with pool.episode("cancelled") as model:
            await model.generate("hello", max_new_tokens=2)

    task = asyncio.create_task(episode())
    await opening.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # the server has answered by now
    assert server.sessions == {}  # opened after the cancel, and closed all the same
    assert pool.stats()["servers"]["http://a"]["held_tokens"] == 0
    await pool.aclose()


async def test_a_turn_in_flight_on_a_server_declared_down_fails_over_at_once() -> None:
    """A hung server (SIGSTOP, a wedged GPU) never answers: once its health check fails, the turn in flight
    there is cut short and resent token-exact to another server, recorded as a failover."""
    a, b = _FakeServer("http://a"), _FakeServer("http://b")
    pool = _pool(a, b)
    pool.router.start_health_checks(pool._check, interval_s=0.01)
    async with pool.episode("hung") as model:
        first = await model.generate("hello", max_new_tokens=2)
        doomed, survivor = (a, b) if first.server == a.url else (b, a)
        assert (await model.pause(["search"])).decision is RetentionDecision.HOLD
        doomed.hang, doomed.started = asyncio.Event(), asyncio.Event()  # never set: the server hangs
        turn = asyncio.create_task(model.generate(" again", max_new_tokens=2))
        await doomed.started.wait()
        doomed.healthy = False
        second = await asyncio.wait_for(turn, 30)  # without the cut: waits for the request timeout (600 s)
        assert second.server == survivor.url and second.failover_from == doomed.url
        assert survivor.requests[-1][0] == model.conversation.turn_prompt(1)  # the full ids, token-exact
        (failover,) = [r for r in second.retention if "failover" in r.reason]
        assert "declared down while the turn was in flight" in failover.reason
        await asyncio.wait_for(doomed.abort_seen.wait(), 30)  # the hung request is aborted (in the background)
        assert doomed.aborted[0].startswith("hung-t1-")
    stats = pool.stats()
    assert stats["failovers"] == 1 and stats["servers"][doomed.url]["held_tokens"] == 0
    await pool.aclose()


async def test_with_no_other_server_a_turn_keeps_its_chance_on_a_server_declared_down() -> None:
    """A failed /health with nowhere to fail over to (one server, maybe only slow to answer): the turn
    in flight is not cut short; it finishes when the server answers."""
    server = _FakeServer("http://a")
    pool = _pool(server)
    pool.router.start_health_checks(pool._check, interval_s=0.01)
    async with pool.episode("alone") as model:
        await model.generate("hello", max_new_tokens=2)
        server.hang, server.started = asyncio.Event(), asyncio.Event()
        turn = asyncio.create_task(model.generate(" again", max_new_tokens=2))
        await server.started.wait()
        server.healthy = False
        await _until(lambda: not pool.router.servers[server.url].healthy, "the health check to mark it down")
        server.hang.set()
        out = await asyncio.wait_for(turn, 30)
        assert out.server == server.url and out.failover_from is None
    await pool.aclose()


async def test_closing_the_pool_ends_a_turn_in_flight_with_pool_closed() -> None:
    server = _FakeServer("http://a")
    pool = _pool(server)
    async with pool.episode("closing") as model:
        await model.generate("hello", max_new_tokens=2)
        server.hang, server.started = asyncio.Event(), asyncio.Event()
        turn = asyncio.create_task(model.generate(" again", max_new_tokens=2))
        await server.started.wait()
        await pool.aclose()
        with pytest.raises(PoolClosed, match="the pool was closed"):
            await turn
        assert server.aborted and server.sessions == {}  # the request aborted, the session closed
        with pytest.raises(PoolClosed, match="episode closing: the pool was closed"):
            await model.generate(" more", max_new_tokens=2)
        with pytest.raises(PoolClosed):
            await model.pause(["search"])
    with pytest.raises(PoolClosed):
        pool.episode("later")
    assert pool.stats()["servers"]["http://a"]["held_tokens"] == 0


async def test_a_transient_open_session_failure_is_retried_on_the_same_server() -> None:
    class FlakyOpen(_FakeServer):
        open_failures = 1

        async def open_session(self, *, timeout_s: float) -> str:
            if self.open_failures:
                self.open_failures -= 1
                raise BackendUnavailable(self.url, "", "POST /open_session: 'busy'", status=503)
            return await super().open_session(timeout_s=timeout_s)

    a, b = FlakyOpen("http://a"), _FakeServer("http://b")
    pool = _pool(a, b)
    async with pool.episode("flaky") as model:
        out = await model.generate("hello", max_new_tokens=2)
        assert out.server == a.url and out.failover_from is None and out.in_session
    assert pool.stats()["servers"][a.url]["healthy"] is True and pool.stats()["failovers"] == 0
    await pool.aclose()


async def test_a_session_refused_at_open_runs_the_turn_without_one() -> None:
    class Refusing(_FakeServer):
        async def open_session(self, *, timeout_s: float) -> str:
            raise SessionRejected(self.url, "", "/open_session refused: 'no radix cache'", status=400)

    server = Refusing("http://a")
    pool = _pool(server)
    async with pool.episode("refused") as model:
        out = await model.generate("hello", max_new_tokens=2)
        assert not out.in_session and [r.decision for r in out.retention] == [RetentionDecision.UNSUPPORTED]
        assert server.requests[-1] == (model.conversation.turn_prompt(0), None)
    assert pool.sessions_refused == {"http://a": "HTTP 400: /open_session refused: 'no radix cache'"}
    await pool.aclose()
