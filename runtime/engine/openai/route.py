"""The OpenAI route's HTTP face: ``GET /v1/models`` and ``POST /v1/chat/completions``, answered whole
or streamed as ``chat.completion.chunk`` events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from interleaf.runtime.engine.openai.hermes import parse_tool_calls
from interleaf.runtime.engine.openai.plan import ChatPlan, build
from interleaf.runtime.engine.openai.protocol import ChatCompletionIn
from interleaf.runtime.engine.request import Req
from interleaf.tools import CALL_OPEN

if TYPE_CHECKING:
    from interleaf.runtime.engine.engine import Engine


def _usage(engine: Engine, req: Req) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": len(req.input_ids),
        "completion_tokens": len(req.output_ids),
        "total_tokens": len(req.input_ids) + len(req.output_ids),
    }
    if engine.config.enable_cache_report:
        usage["prompt_tokens_details"] = {"cached_tokens": req.cached_tokens}
    return usage


def _finish_reason(req: Req, calls: list[dict[str, Any]]) -> str:
    if (req.finish_reason or {}).get("type") == "length":  # truncated, even after complete calls
        return "length"
    return "tool_calls" if calls else "stop"


def _error(message: str, status: int, kind: str = "InternalServerError") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def _abort_message(req: Req) -> str | None:
    fr = req.finish_reason or {}
    if fr.get("type") != "abort":
        return None
    return f"generation aborted: {fr.get('message', 'no reason given')}"


def completion(engine: Engine, plan: ChatPlan) -> dict[str, Any]:
    """The ``chat.completion`` body of a finished request."""
    req = plan.req
    content: str | None = req.text
    calls: list[dict[str, Any]] = []
    if plan.parse_tools:
        content, calls = parse_tool_calls(req.text, plan.tool_names)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": engine.model_name,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish_reason(req, calls)}],
        "usage": _usage(engine, req),
    }  # fmt: skip


def _held_back(text: str, markers: list[str]) -> int:
    """Length of the longest tail of ``text`` that could be the start of one of ``markers``."""
    hold = 0
    for marker in markers:
        for k in range(min(len(marker), len(text)), hold, -1):
            if marker.startswith(text[-k:]):
                hold = k
                break
    return hold


async def stream_chunks(engine: Engine, plan: ChatPlan, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE ``chat.completion.chunk`` events; tool calls are sent whole once the output is complete.

    Text that may still turn into a tool call (from the call's opening tag on) or into a stop string
    is held back, so a client never sees text that the final answer does not contain.
    """
    req = plan.req
    assert req.queue is not None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created,
                "model": engine.model_name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    markers = [*req.params.stop, *([CALL_OPEN] if plan.parse_tools else [])]
    sent = 0
    try:
        yield chunk({"role": "assistant", "content": ""})
        while not req.finished:
            await req.queue.get()
            while not req.queue.empty():
                req.queue.get_nowait()
            if req.finished:
                break
            text = engine.tokenizer.decode(req.output_ids, skip_special_tokens=req.params.skip_special_tokens)
            text = text.rstrip("\ufffd")  # an incomplete UTF-8 sequence: wait for its next token
            if plan.parse_tools:  # parse_tool_calls strips the content; stream the same text
                text = text.lstrip()
                if CALL_OPEN in text:
                    text = text[: text.index(CALL_OPEN)]
            end = len(text) - _held_back(text, markers)
            if end > sent:
                yield chunk({"content": text[sent:end]})
                sent = end
        problem = _abort_message(req)
        if problem is not None:
            yield b"data: " + json.dumps(_error(problem, 500)).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            return
        content, calls = parse_tool_calls(req.text, plan.tool_names) if plan.parse_tools else (req.text, [])
        rest = (content or "")[sent:]
        if rest:
            yield chunk({"content": rest})
        for i, call in enumerate(calls):
            yield chunk({"tool_calls": [{"index": i, **call}]})
        yield chunk({}, _finish_reason(req, calls))
        if include_usage:
            body = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created,
                    "model": engine.model_name, "choices": [], "usage": _usage(engine, req)}  # fmt: skip
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if not req.finished:
            engine.scheduler.abort(req.rid, "client disconnected")


def add_openai_routes(app: FastAPI, engine: Engine) -> None:
    """Mount ``GET /v1/models`` and ``POST /v1/chat/completions`` on the engine's app."""

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": engine.model_name, "object": "model",
                                            "created": int(engine.started), "owned_by": "interleaf"}]}  # fmt: skip

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionIn) -> Any:
        plan = build(engine, body)
        await engine.run(plan.req)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream_chunks(engine, plan, include_usage), media_type="text/event-stream")
        await engine.wait(plan.req)
        problem = _abort_message(plan.req)
        if problem is not None:
            return JSONResponse(_error(problem, 500), status_code=500)
        return completion(engine, plan)


__all__ = ["add_openai_routes", "completion", "stream_chunks"]
