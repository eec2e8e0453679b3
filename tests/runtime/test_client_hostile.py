"""The runtime client against servers that answer badly, over real HTTP on 127.0.0.1.

A small standard-library server plays an SGLang-protocol engine that refuses or garbles what a
test tells it to. Logic-only cases (failover of a turn in flight, a pool closed mid-turn) are in
test_failover.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from interleaf.runtime.client import BackendError, BackendPool
from interleaf.telemetry.records import RetentionDecision


class _Tokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + ord(c) % 200 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "x" * len(ids)


class _Hostile(ThreadingHTTPServer):
    """An SGLang-protocol server on 127.0.0.1 whose answers a test sets."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.counts: Counter[str] = Counter()
        self.server_info: tuple[int, bytes, str] | None = None
        """(status, body, content type) to answer /server_info with instead of a good one."""
        self.open_session_503 = 0
        """/open_session calls to answer 503 before answering with a session id."""
        self.open_session_400: str | None = None
        """Refuse every /open_session with a 400 carrying this message (an engine whose /server_info offers
        streaming sessions it cannot serve, e.g. one started without its radix cache)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Hostile

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path
        self.server.counts[path] += 1
        if path == "/server_info":
            if self.server.server_info is not None:
                return self._send(*self.server.server_info)
            info = {"internal_states": [{"max_total_num_tokens": 10_000}], "enable_streaming_session": True}
            return self._send(200, info)
        if path == "/model_info":
            return self._send(200, {"model_path": "hostile"})
        if path == "/health":
            return self._send(200, {})
        return self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        path = self.path
        self.server.counts[path] += 1
        if path == "/open_session":
            if self.server.open_session_400 is not None:
                error = {"message": self.server.open_session_400, "type": "BadRequestError", "code": 400}
                return self._send(400, {"error": error})
            if self.server.counts[path] <= self.server.open_session_503:
                return self._send(503, {"error": "busy"})
            return self._send(200, f"sid-{self.server.counts[path]}")
        if path in ("/close_session", "/abort_request"):
            return self._send(200, {})
        if path == "/generate":
            prompt = len(request["input_ids"])
            meta = {"id": request.get("rid", "r"), "prompt_tokens": prompt, "completion_tokens": 2,
                    "cached_tokens": 0, "finish_reason": {"type": "length"}}  # fmt: skip
            return self._send(200, {"text": "ab", "output_ids": [5, 6], "meta_info": meta})
        return self._send(404, {})


@pytest.fixture
def hostile() -> Iterator[_Hostile]:
    server = _Hostile()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _no_network() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the arguments should have been refused before any request ({request.url})")

    return httpx.MockTransport(handler)


# -- /open_session: refused, or failing for a moment -----------------------------------------------


async def test_a_server_that_refuses_sessions_runs_the_turns_without_one(hostile: _Hostile) -> None:
    """/server_info says streaming sessions, /open_session says 400 (the embedded engine without its radix
    cache did): the turns run with the full ids, recorded ``unsupported`` naming the refusal, and the pool
    stops asking that server."""
    hostile.open_session_400 = "streaming sessions need the radix cache (server started with --disable-radix-cache)"
    pool = await BackendPool.connect([hostile.url], retention="session", tokenizer=_Tokenizer())
    try:
        for episode in ("first", "second"):
            async with pool.episode(episode) as model:
                out = await model.generate("hello there", max_new_tokens=4)
                assert not out.in_session
                assert [r.decision for r in out.retention] == [RetentionDecision.UNSUPPORTED]
                assert "refused /open_session" in out.retention[0].reason
                assert "radix cache" in out.retention[0].reason  # the engine's own words
                assert (await model.pause(["search"])).decision is RetentionDecision.UNSUPPORTED
                again = await model.generate(" more", max_new_tokens=4)
                assert not again.in_session and again.retention == []
                assert again.cache.prompt_tokens == len(model.conversation.turn_prompt(1))  # full ids sent
        assert hostile.counts["/open_session"] == 1  # asked once; the second episode knew
        assert pool.stats()["servers"][hostile.url]["healthy"] is True
    finally:
        await pool.aclose()


async def test_a_transient_open_session_failure_is_retried_not_marked_down(hostile: _Hostile) -> None:
    hostile.open_session_503 = 1
    pool = await BackendPool.connect([hostile.url], retention="session", tokenizer=_Tokenizer(), backoff_s=0.0)
    try:
        async with pool.episode("retried") as model:
            out = await model.generate("hello", max_new_tokens=2)
            assert out.in_session and out.server == hostile.url and out.failover_from is None
        assert hostile.counts["/open_session"] == 2
        stats = pool.stats()
        assert stats["servers"][hostile.url]["healthy"] is True and stats["servers"][hostile.url]["failures"] == 0
    finally:
        await pool.aclose()


async def test_open_session_failing_past_the_retries_marks_the_server_down(hostile: _Hostile) -> None:
    hostile.open_session_503 = 10
    pool = await BackendPool.connect(
        [hostile.url], retention="session", tokenizer=_Tokenizer(), backoff_s=0.0, retries=2
    )
    try:
        async with pool.episode("gave-up") as model:
            with pytest.raises(BackendError, match=r"no healthy server.*/open_session"):
                await model.generate("hello", max_new_tokens=2)
        assert hostile.counts["/open_session"] == 3  # the first try and two retries
    finally:
        await pool.aclose()


# -- malformed replies, named ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((200, b"<html>hi</html>", "text/html"), "GET /server_info returned non-JSON (text/html, '<html>hi</html>')"),
        ((200, b"[1, 2]", "application/json"), "GET /server_info returned JSON list, not an object"),
    ],
)
async def test_a_malformed_server_info_names_the_server_endpoint_and_reply(hostile: _Hostile, answer, said) -> None:
    hostile.server_info = answer
    with pytest.raises(BackendError) as info:
        await BackendPool.connect([hostile.url], tokenizer=_Tokenizer())
    assert f"cannot use: {hostile.url}: {said}" in str(info.value)


# -- arguments -----------------------------------------------------------------------------------


async def test_a_single_url_string_is_one_server(hostile: _Hostile) -> None:
    pool = await BackendPool.connect(hostile.url + "/", tokenizer=_Tokenizer())
    try:
        assert list(pool.backends) == [hostile.url]
        assert hostile.counts["/server_info"] == 1
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    ("urls", "said"),
    [
        ([], "give at least one server URL"),
        (["127.0.0.1:30000"], "'127.0.0.1:30000' is not a server URL"),
        (["ftp://127.0.0.1:30000"], "'ftp://127.0.0.1:30000' is not a server URL"),
        (["http://127.0.0.1:notaport"], "'http://127.0.0.1:notaport' is not a server URL"),
        (["http://127.0.0.1:30000", "http://127.0.0.1:30000/"], "'http://127.0.0.1:30000/' is listed twice"),
        ([None], "None is not a URL string"),
        (b"http://127.0.0.1:30000", "give a server URL (http://host:port) or a list of them"),
    ],
)
async def test_bad_urls_are_refused_before_the_network(urls, said) -> None:
    with pytest.raises(ValueError) as info:
        await BackendPool.connect(urls, tokenizer=_Tokenizer(), transport=_no_network())
    assert said in str(info.value)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("retries", math.nan, "retries=nan: input should be a valid integer"),
        ("retries", 2.0, "retries=2.0: input should be a valid integer"),
        ("backoff_s", math.nan, "backoff_s=nan: input should be a finite number"),
        ("backoff_s", math.inf, "backoff_s=inf: input should be a finite number"),
        ("session_timeout_s", 0, "session_timeout_s=0: input should be greater than 0"),
        ("session_timeout_s", -5, "session_timeout_s=-5: input should be greater than 0"),
        ("request_timeout_s", 0, "request_timeout_s=0: input should be greater than 0"),
        ("request_timeout_s", -1, "request_timeout_s=-1: input should be greater than 0"),
        ("health_interval_s", 0, "health_interval_s=0: input should be greater than 0"),
        ("health_interval_s", -1, "health_interval_s=-1: input should be greater than 0"),
        ("admission_wait_s", math.nan, "admission_wait_s=nan: input should be a finite number"),
        ("admission_overcommit", math.nan, "admission_overcommit=nan: input should be a finite number"),
        ("kv_budget_fraction", "0.5", "kv_budget_fraction='0.5': input should be a valid number"),
        ("kv_budget_fraction", math.nan, "kv_budget_fraction=nan: input should be a finite number"),
        ("kv_share", math.nan, "kv_share=nan: input should be a finite number"),
        ("admission", "yes", "admission='yes': input should be a valid boolean"),
        ("retentoin", "session", "retentoin='session': unknown option"),
        ("retention", None, "retention=None is not a policy name"),
    ],
)
async def test_nonsense_settings_are_refused_before_the_network(option, value, said) -> None:
    with pytest.raises(ValueError) as info:
        await BackendPool.connect(["http://127.0.0.1:30000"], tokenizer=_Tokenizer(), transport=_no_network(),
                                  **{option: value})  # fmt: skip
    assert said in str(info.value)


def test_the_constructor_refuses_the_same_settings() -> None:
    from interleaf.runtime.client import ServerInfo

    class _Backend:
        url = "http://127.0.0.1:30000"
        info = ServerInfo(url=url, max_total_num_tokens=1000)

    for option, value in (("retries", math.nan), ("backoff_s", math.nan), ("session_timeout_s", 0)):
        with pytest.raises(ValueError, match=f"{option}=(nan|0)"):
            BackendPool([_Backend()], tokenizer=_Tokenizer(), **{option: value})  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"backends=\[\]"):
        BackendPool([], tokenizer=_Tokenizer())


async def test_a_refused_session_is_not_an_error_of_the_turn_even_when_open_session_is_garbled(
    hostile: _Hostile,
) -> None:
    """``/open_session`` answering something that is not a session id costs that turn its session only."""

    class _Garbled(_Handler):
        def do_POST(self) -> None:
            if self.path == "/open_session":
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.server.counts[self.path] += 1
                return self._send(200, b"<html>oops</html>", "text/html")
            return super().do_POST()

    hostile.RequestHandlerClass = _Garbled
    pool = await BackendPool.connect([hostile.url], retention="session", tokenizer=_Tokenizer())
    try:
        async with pool.episode("garbled") as model:
            out = await model.generate("hello", max_new_tokens=2)
            assert not out.in_session and [r.decision for r in out.retention] == [RetentionDecision.RELEASE]
            assert "/open_session returned text/html, '<html>oops</html>'" in out.retention[0].reason
            record = await model.pause(["search"])
            assert record.decision is RetentionDecision.DENIED and "refused the session" in record.reason
            again = await model.generate(" more", max_new_tokens=2)  # asks again: it may have been a glitch
            assert not again.in_session
        assert hostile.counts["/open_session"] == 2
    finally:
        await pool.aclose()
