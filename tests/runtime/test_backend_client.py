"""SGLangBackend parsing and error paths, against an in-process httpx.MockTransport (no engine).

Integration against the real engine over HTTP is in test_backend_engine.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from interleaf.runtime.client import (
    BackendError,
    BackendUnavailable,
    PoolClosed,
    RequestAborted,
    SessionRejected,
    SessionTurn,
    SGLangBackend,
)

SERVER_INFO = {
    "enable_streaming_session": True,
    "enable_metrics": True,
    "version": "0.5.23",
    "internal_states": [{"max_total_num_tokens": 20000}],
}
MODEL_INFO = {"model_path": "/models/smol", "served_model_name": "smol"}


def _transport(generate=None, *, server_info=SERVER_INFO, seen: list | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if seen is not None:
            seen.append((path, json.loads(request.content) if request.content else None))
        if path == "/server_info":
            return httpx.Response(200, json=server_info)
        if path == "/model_info":
            return httpx.Response(200, json=MODEL_INFO)
        if path == "/open_session":
            return httpx.Response(200, json="sid-1")
        if path == "/close_session":
            return httpx.Response(200, json={"success": True})
        if path == "/metrics":
            return httpx.Response(200, text='sglang:num_streaming_sessions 2\nsglang:kv_used_tokens{m="x"} 70\n')
        if path == "/generate" and generate is not None:
            return generate(request)
        return httpx.Response(404, text="not found")

    return httpx.MockTransport(handler)


def _reply(**meta) -> httpx.Response:
    base = {
        "id": "r1",
        "finish_reason": {"type": "stop", "matched": 2},
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "cached_tokens": 4,
        "e2e_latency": 0.5,
        "queue_time": 0.1,
        "ttft": 0.2,
    }
    base.update(meta)
    return httpx.Response(200, json={"text": "hi", "output_ids": [7, 8, 2], "meta_info": base})


async def test_capabilities_and_generate_payload_and_parsing() -> None:
    seen: list = []
    backend = await SGLangBackend.connect("http://srv:1/", transport=_transport(lambda r: _reply(), seen=seen))
    try:
        assert backend.info.max_total_num_tokens == 20000
        assert backend.info.streaming_sessions and backend.info.metrics
        assert backend.info.served_model_name == "smol"
        assert backend.info.chunked_prefill_size == 8192  # not reported: SGLang's default on large GPUs
        result = await backend.generate(
            [1, 2], sampling_params={"max_new_tokens": 4}, rid="r1", session=SessionTurn("sid-1", "r0")
        )
        path, body = seen[-1]
        assert path == "/generate"
        assert body["input_ids"] == [1, 2] and body["rid"] == "r1"
        assert body["session_params"] == {"id": "sid-1", "rid": "r0"}
        assert "priority" not in body  # none given, none sent: the server's default applies
        await backend.generate([3], sampling_params={}, rid="r2", priority=1)
        assert seen[-1][1]["priority"] == 1  # SGLang's top-level field
        assert result.output_ids == [7, 8, 2] and result.finish_reason == "stop"
        assert (result.prompt_tokens, result.cached_tokens, result.completion_tokens) == (5, 4, 3)
        assert result.queue_s == 0.1 and result.ttft_s == 0.2 and result.server_e2e_s == 0.5
        assert result.server == "http://srv:1"
        metrics = await backend.metrics()
        assert metrics is not None and metrics.num_streaming_sessions == 2 and metrics.kv_used_tokens == 70
    finally:
        await backend.aclose()


async def test_server_without_kv_capacity_is_refused_with_the_field_named() -> None:
    bad = {**SERVER_INFO, "internal_states": [{}]}
    with pytest.raises(BackendError, match=r"internal_states\[0\]\.max_total_num_tokens is None"):
        await SGLangBackend.connect("http://srv:1", transport=_transport(server_info=bad))


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(503, text="overloaded"), BackendUnavailable, "HTTP 503"),
        (httpx.Response(400, json={"error": "bad field"}), SessionRejected, "session sid-1 turn after rid r0"),
        (httpx.Response(200, json={"text": "x"}), BackendError, "no meta_info"),
        (_reply(cached_tokens=None), BackendError, "meta_info.cached_tokens is None"),
        (_reply(prompt_tokens=-1), BackendError, "meta_info.prompt_tokens is -1, expected an int in 0.."),
        (_reply(prompt_tokens=2**40), BackendError, "meta_info.prompt_tokens is 1099511627776"),
        (_reply(cached_tokens=9), BackendError, "meta_info.cached_tokens=9 exceeds prompt_tokens=5"),
        (_reply(finish_reason={"type": "abort", "message": "kv full"}), RequestAborted, "aborted"),
        (
            httpx.Response(
                200,
                json={"text": "x", "output_ids": ["a", None], "meta_info": json.loads(_reply().content)["meta_info"]},
            ),
            BackendError,
            "/generate output_ids[0] is 'a', expected a token id (an int >= 0): ['a', None]",
        ),
        (httpx.Response(200, json="hello"), BackendError, "/generate returned JSON str, not an object"),
        (httpx.Response(200, json=["hello"]), BackendError, "/generate returned JSON str, not an object"),
    ],
)
async def test_generate_errors_name_server_request_and_why(response, error, text) -> None:
    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(lambda r: response))
    try:
        with pytest.raises(error) as info:
            await backend.generate([1], sampling_params={}, rid="rq-9", session=SessionTurn("sid-1", "r0"))
        assert "server http://srv:1 request rq-9" in str(info.value)
        assert text in str(info.value)
    finally:
        await backend.aclose()


@pytest.mark.parametrize("reported", [float("nan"), float("inf"), 0.5, "many", None])
async def test_a_batch_size_that_cannot_be_one_is_not_recorded(reported) -> None:
    import json

    body = json.loads(_reply().content)
    body["meta_info"]["batch_size"] = reported
    # json.dumps writes NaN and Infinity as Python does (httpx's json= refuses them)
    reply = httpx.Response(200, content=json.dumps(body), headers={"content-type": "application/json"})
    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(lambda r: reply))
    try:
        if reported in (float("inf"),) or reported != reported:  # NaN, infinity: not JSON, the reply is refused
            with pytest.raises(BackendError, match="server http://srv:1 request rq-1: /generate returned non-JSON"):
                await backend.generate([1], sampling_params={}, rid="rq-1")
            return
        result = await backend.generate([1], sampling_params={}, rid="rq-1")
        assert result.batch_size is None
        assert result.cache_figures().batch_size == 1.0  # a valid record: the call's own sequence
    finally:
        await backend.aclose()


async def test_unreachable_server_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(refuse))
    try:
        with pytest.raises(BackendUnavailable, match="is the server running"):
            await backend.generate([1], sampling_params={}, rid="rq-1")
    finally:
        await backend.aclose()


async def test_sessions_off_is_detected_and_refused_locally() -> None:
    info = {**SERVER_INFO, "enable_streaming_session": False}
    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(server_info=info))
    try:
        with pytest.raises(SessionRejected, match="--enable-streaming-session"):
            await backend.open_session(timeout_s=10)
    finally:
        await backend.aclose()


async def test_text_requests_hidden_state_fields_and_a_session_first_turn() -> None:
    seen: list = []
    hidden = {"layers": [3], "prompt": [[[0.5, 1.0]]], "output": [[[2.0, 3.0]]]}
    backend = await SGLangBackend.connect(
        "http://srv:1", transport=_transport(lambda r: _reply(hidden_states=hidden, batch_size=2.5), seen=seen)
    )
    try:
        sampling = {"max_new_tokens": 8, "regex": r"(a|b)", "ignore_eos": True}
        result = await backend.generate_text(
            "<|im_start|>user\nhi", sampling_params=sampling, return_hidden_states=True, hidden_states_layers=[3],
            hidden_states_last_k=1,
        )  # fmt: skip
        _, body = seen[-1]
        assert body == {
            "text": "<|im_start|>user\nhi",
            "sampling_params": sampling,
            "return_hidden_states": True,
            "hidden_states_layers": [3],
            "hidden_states_last_k": 1,
        }
        # interleaf's per-layer form comes back as sent; the raw meta_info figures too.
        assert result.hidden_states == hidden and result.batch_size == 2.5 and result.request_id == "r1"
        await backend.generate([1, 2], sampling_params={}, rid="r2", session=SessionTurn("sid-1"))
        _, body = seen[-1]
        assert body["session_params"] == {"id": "sid-1"} and "return_hidden_states" not in body
        with pytest.raises(ValueError, match="hidden_states_layers=\\[3\\] needs return_hidden_states=True"):
            await backend.generate([1], sampling_params={}, rid="r3", hidden_states_layers=[3])
        with pytest.raises(ValueError, match="hidden_states_last_k=0"):
            await backend.generate_text("x", sampling_params={}, return_hidden_states=True, hidden_states_last_k=0)
        assert [p for p, _ in seen].count("/generate") == 2  # refused locally, before the network
    finally:
        await backend.aclose()


async def test_capability_gaps_name_server_capability_and_flag() -> None:
    """A session-holding policy on a server without streaming sessions (SGLang's default) is a gap:
    named with the server, the capability and the flag; ``none`` needs nothing."""
    from interleaf.runtime.client import effective_retention, probe_retention_gaps

    no_sessions = {**SERVER_INFO, "enable_streaming_session": False}
    nested = {"server_args": {"enable_streaming_session": False}, "internal_states": [{"max_total_num_tokens": 9}]}
    for info in (no_sessions, nested):
        (gap,) = await probe_retention_gaps(["http://s:1"], "session", transport=_transport(server_info=info))
        assert (gap.server, gap.capability, gap.server_flag) == (
            "http://s:1",
            "streaming sessions",
            "--enable-streaming-session",
        )
        assert gap.message() == (
            "http://s:1 does not serve streaming sessions (needed by retention session): "
            "start it with --enable-streaming-session; this job runs retention none there"
        )
    assert await probe_retention_gaps(["http://s:1"], "none", transport=_transport(server_info=no_sessions)) == []
    assert await probe_retention_gaps(["http://s:1"], "adaptive", transport=_transport()) == []
    with pytest.raises(ValueError):
        await probe_retention_gaps(["http://s:1"], "forever", transport=_transport())
    backend = await SGLangBackend.connect("http://s:1", transport=_transport(server_info=no_sessions))
    assert [effective_retention(p, backend.info).value for p in ("none", "session", "ttl", "adaptive")] == ["none"] * 4
    await backend.aclose()


@pytest.mark.parametrize(("reported", "read"), [(2048, 2048), (-1, 8192), ("big", 8192), (True, 8192)])
async def test_the_prefill_chunk_is_read_from_server_info(reported, read) -> None:
    info = {**SERVER_INFO, "chunked_prefill_size": reported}
    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(server_info=info))
    try:
        assert backend.info.chunked_prefill_size == read
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (httpx.Response(200, text="<html>hi</html>", headers={"content-type": "text/html"}),
         "GET /server_info returned non-JSON (text/html, '<html>hi</html>')"),
        (httpx.Response(200, json="up"), "GET /server_info returned JSON str, not an object"),
        (httpx.Response(200, json={"internal_states": "full"}), "internal_states[0].max_total_num_tokens is None"),
        (httpx.Response(200, json={"internal_states": [7], "server_args": ["x"]}),
         "internal_states[0].max_total_num_tokens is None"),
    ],
)  # fmt: skip
async def test_a_malformed_server_info_is_a_backend_error_naming_endpoint_and_reply(reply, said) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply if request.url.path == "/server_info" else httpx.Response(200, json=MODEL_INFO)

    with pytest.raises(BackendError) as info:
        await SGLangBackend.connect("http://srv:1", transport=httpx.MockTransport(handler))
    assert str(info.value).startswith("server http://srv:1: ") and said in str(info.value)


async def test_a_malformed_open_session_reply_is_a_refused_session() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/open_session":
            return httpx.Response(200, text="<html>oops</html>", headers={"content-type": "text/html"})
        return _transport().handle_request(request)

    backend = await SGLangBackend.connect("http://srv:1", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(SessionRejected, match=r"/open_session returned text/html, '<html>oops</html>', expected"):
            await backend.open_session(timeout_s=10)
    finally:
        await backend.aclose()


async def test_a_closed_backend_says_so() -> None:
    backend = await SGLangBackend.connect("http://srv:1", transport=_transport(lambda r: _reply()))
    await backend.aclose()
    with pytest.raises(PoolClosed, match=r"server http://srv:1 request r1: POST /generate: this client was closed"):
        await backend.generate([1], sampling_params={}, rid="r1")
    with pytest.raises(PoolClosed):
        await backend.open_session(timeout_s=10)
    assert await backend.health() is False and await backend.metrics() is None
    await backend.abort("r1")  # best effort: nothing to do, no error


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_a_request_timeout_must_be_a_positive_number(timeout_s) -> None:
    from interleaf.runtime.client import ServerInfo

    with pytest.raises(ValueError, match=r"request_timeout_s=.* must be a finite number of seconds > 0"):
        SGLangBackend(
            "http://srv:1", ServerInfo(url="http://srv:1", max_total_num_tokens=1), request_timeout_s=timeout_s
        )
