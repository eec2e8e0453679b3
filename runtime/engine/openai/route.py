"""The OpenAI route's HTTP face: ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/chat/completions``
and ``POST /v1/completions``, answered whole or streamed as ``chat.completion.chunk`` / ``text_completion``
events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from interleaf.runtime.engine.openai.hermes import parse_tool_calls
from interleaf.runtime.engine.openai.plan import ChatPlan, CompletionPlan, build, build_completion
from interleaf.runtime.engine.openai.protocol import ChatCompletionIn, CompletionIn
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


async def _decoded_text(engine: Engine, req: Req) -> AsyncIterator[str]:
    """The request's output decoded so far, each time new tokens arrive, until it finishes. A trailing
    incomplete UTF-8 sequence is left out until its next token completes it."""
    while not req.finished:
        await req.queue.get()
        while not req.queue.empty():  # several tokens since the last wake-up: decode once
            req.queue.get_nowait()
        if req.finished:
            break
        text = engine.tokenizer.decode(req.output_ids, skip_special_tokens=req.params.skip_special_tokens)
        yield text.rstrip("\ufffd")


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
        async for text in _decoded_text(engine, req):
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


def text_completion(engine: Engine, plan: CompletionPlan) -> dict[str, Any]:
    """The ``text_completion`` body of finished requests (one choice per prompt)."""
    choices = [{"index": i, "text": echo + req.text, "logprobs": None,
                "finish_reason": "length" if (req.finish_reason or {}).get("type") == "length" else "stop"}
               for i, (req, echo) in enumerate(zip(plan.reqs, plan.prompts, strict=True))]  # fmt: skip
    usages = [_usage(engine, req) for req in plan.reqs]
    usage = {k: sum(u[k] for u in usages) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if engine.config.enable_cache_report:
        usage["prompt_tokens_details"] = {"cached_tokens": sum(r.cached_tokens for r in plan.reqs)}
    return {"id": plan.id, "object": "text_completion", "created": plan.created, "model": engine.model_name,
            "choices": choices, "usage": usage}  # fmt: skip


async def stream_text(engine: Engine, plan: CompletionPlan, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE ``text_completion`` chunks of one prompt's completion; text that may become a stop string is
    held back until it cannot."""
    req = plan.reqs[0]
    assert req.queue is not None

    def chunk(text: str, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {"id": plan.id, "object": "text_completion", "created": plan.created,
                                "model": engine.model_name,
                                "choices": [] if usage else [{"index": 0, "text": text, "logprobs": None,
                                                              "finish_reason": finish}]}  # fmt: skip
        if usage:
            body["usage"] = usage
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    sent = 0
    try:
        if plan.prompts[0]:
            yield chunk(plan.prompts[0])
        async for text in _decoded_text(engine, req):
            end = len(text) - _held_back(text, req.params.stop)
            if end > sent:
                yield chunk(text[sent:end])
                sent = end
        problem = _abort_message(req)
        if problem is not None:
            yield b"data: " + json.dumps(_error(problem, 500)).encode() + b"\n\n"
        else:
            if req.text[sent:]:
                yield chunk(req.text[sent:])
            yield chunk("", "length" if (req.finish_reason or {}).get("type") == "length" else "stop")
            if include_usage:
                yield chunk("", usage=_usage(engine, req))
        yield b"data: [DONE]\n\n"
    finally:
        if not req.finished:
            engine.scheduler.abort(req.rid, "client disconnected")


def add_openai_routes(app: FastAPI, engine: Engine) -> None:
    """Mount ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` and
    ``POST /v1/completions`` on the engine's app."""

    def card() -> dict[str, Any]:
        return {"id": engine.model_name, "object": "model", "created": int(engine.started), "owned_by": "interleaf",
                "root": engine.model_name, "parent": None, "max_model_len": engine.context_length}  # fmt: skip

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{model:path}", response_model=None)
    async def model(model: str) -> Any:
        if model != engine.model_name:
            return JSONResponse({"error": {"message": f"The model '{model}' does not exist; this engine serves "
                                           f"'{engine.model_name}'", "type": "invalid_request_error",
                                           "param": "model", "code": "model_not_found"}}, status_code=404)  # fmt: skip
        return card()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionIn, request: Request) -> Any:
        plan = build(engine, body)
        await engine.run(plan.req)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream_chunks(engine, plan, include_usage), media_type="text/event-stream")
        await engine.wait(plan.req, request.is_disconnected)
        problem = _abort_message(plan.req)
        if problem is not None:
            return JSONResponse(_error(problem, 500), status_code=500)
        return completion(engine, plan)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionIn, request: Request) -> Any:
        plan = build_completion(engine, body)
        for req in plan.reqs:
            await engine.run(req)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream_text(engine, plan, include_usage), media_type="text/event-stream")
        await asyncio.gather(*(engine.wait(req, request.is_disconnected) for req in plan.reqs))
        for req in plan.reqs:
            problem = _abort_message(req)
            if problem is not None:
                return JSONResponse(_error(problem, 500), status_code=500)
        return text_completion(engine, plan)


__all__ = ["add_openai_routes", "completion", "stream_chunks", "stream_text", "text_completion"]
