"""The embedded engine's OpenAI-compatible route: ``/v1/models`` and ``/v1/chat/completions``.

What SGLang serves with ``--tool-call-parser hermes``: ``messages`` are rendered by the model's chat
template, tools travel in hermes style (``<tools>`` in the system prompt, ``<tool_call>{json}</tool_call>``
in assistant turns, ``<tool_response>`` in the turn after), and the output's tool calls are parsed
back into OpenAI ``tool_calls``. Unlike SGLang's parser, which trusts the model, the generation is
constrained by an EBNF grammar built from the tools' parameter schemas whenever tools are offered and
``tool_choice`` is not ``"none"`` (DESIGN.md §5): a small model cannot write a valid call unaided, and
with the grammar every call it starts parses.

Requests go through the engine's own machinery (``Engine.sampling_params``, ``new_request``, the
grammar backend, ``Engine.run``), so radix caching, metrics and aborts behave as on ``/generate``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from interleaf.runtime.engine.grammar import GrammarError
from interleaf.runtime.engine.protocol import BadRequest, SamplingParamsIn
from interleaf.runtime.engine.request import Req
from interleaf.runtime.engine.scheduler import new_request

if TYPE_CHECKING:
    from interleaf.runtime.engine.server import Engine

# --- request bodies ------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class FunctionDef(_In):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Tool name: letters, digits, ``_``, ``-``, ``.``; at most 64 characters (OpenAI's rule)."""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """JSON schema of the arguments object; None means the tool takes no arguments."""
    strict: bool | None = None


class ToolDef(_In):
    type: Literal["function"] = "function"
    function: FunctionDef


class FunctionCallIn(_In):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_In):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionName(_In):
    name: str


class NamedToolChoice(_In):
    type: Literal["function"] = "function"
    function: FunctionName


class JsonSchemaFormat(_In):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_In):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_In):
    include_usage: bool = False


class ChatCompletionIn(_In):
    """Body of ``POST /v1/chat/completions`` (OpenAI's names; SGLang's sampling extras accepted)."""

    model: str | None = None
    messages: list[MessageIn] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    logprobs: bool = False
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0


# --- rendering -----------------------------------------------------------------------------------

_TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>{{"name": <function-name>, "arguments": <args-json-object>}}'
    "</tool_call>"
)


def _text(content: str | list[dict[str, Any]] | None, field: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for i, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest(f"{field}[{i}]: only text parts are supported by the embedded engine, got type "
                             f"{part.get('type')!r}; send the content as a string", f"{field}[{i}]")  # fmt: skip
        parts.append(part["text"])
    return "".join(parts)


def _arguments(call: ToolCallIn, field: str) -> dict[str, Any]:
    args = call.function.arguments
    if isinstance(args, dict):
        return args
    try:
        parsed = json.loads(args or "{}")
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{field}: arguments {args[:200]!r} are not JSON ({exc}); send a JSON object string",
                         field) from exc  # fmt: skip
    if not isinstance(parsed, dict):
        raise BadRequest(f"{field}: arguments must be a JSON object, got {args[:200]!r}", field)
    return parsed


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """A call as the grammar makes the model write it, so history renders back to the same text."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


def tool_schemas(tools: list[ToolDef]) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in tools]


def hermes_messages(body: ChatCompletionIn) -> list[dict[str, str]]:
    """Messages with tools, tool calls and tool results spelled out in hermes text (for plain templates)."""
    out: list[dict[str, str]] = []
    for i, m in enumerate(body.messages):
        field = f"messages[{i}]"
        content = _text(m.content, f"{field}.content")
        if m.role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("_tool"):  # consecutive results share one turn, as in Qwen's template
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        if m.role == "assistant" and m.tool_calls:
            calls = [format_tool_call(c.function.name, _arguments(c, f"{field}.tool_calls[{j}].function.arguments"))
                     for j, c in enumerate(m.tool_calls)]  # fmt: skip
            content = content + "\n" + "".join(calls) if content else "".join(calls)  # as the grammar writes them
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    for m in out:
        m.pop("_tool", None)
    if body.tools:
        block = _TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False)
                                                     for t in tool_schemas(body.tools)))  # fmt: skip
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{block}" if out[0]["content"] else block
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def native_messages(body: ChatCompletionIn) -> list[dict[str, Any]]:
    """Messages for a template that renders tools itself (Qwen-style): arguments as dicts."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(body.messages):
        field = f"messages[{i}]"
        msg: dict[str, Any] = {"role": m.role, "content": _text(m.content, f"{field}.content")}
        if m.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {
                    "name": c.function.name, "arguments": _arguments(c, f"{field}.tool_calls[{j}].function.arguments")}}
                for j, c in enumerate(m.tool_calls)
            ]  # fmt: skip
        if m.tool_call_id is not None:
            msg["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            msg["name"] = m.name
        out.append(msg)
    return out


def render_prompt(tokenizer: Any, body: ChatCompletionIn) -> str:
    """The prompt text: the model's chat template over the messages, tools in hermes style.

    A template that mentions ``tools`` renders them itself; others (SmolLM2's) get the hermes
    system block and hermes-formatted tool turns from us.
    """
    native = "tools" in (getattr(tokenizer, "chat_template", None) or "")
    messages = native_messages(body) if native else hermes_messages(body)
    tools = tool_schemas(body.tools) if native and body.tools else None
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja raises TemplateError or TypeError on messages it cannot render
        raise BadRequest(f"messages: the model's chat template cannot render them: {exc}", "messages") from exc


# --- the tool-call grammar ----------------------------------------------------------------------


def _root_renamed(grammar: Any, name: str) -> str:
    """The grammar's EBNF with its root rule renamed (xgrammar names every other rule root_N / basic_*)."""
    text = str(grammar)
    renamed, n = re.subn(r"^root ::= ", f"{name} ::= ", text, count=1, flags=re.M)
    assert n == 1, f"xgrammar printed no root rule:\n{text[:500]}"
    return renamed


def tool_call_ebnf(tools: list[ToolDef], *, only: str | None, required: bool, parallel: bool) -> str:
    """EBNF (xgrammar) for the output: plain text or ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``.

    ``only`` restricts the calls to one named tool (exactly one call); ``required`` drops the plain-text
    branch; ``parallel`` allows several calls back to back. Arguments follow each tool's
    parameter schema (strict: no extra keys), printed as ``json.dumps`` prints them.
    """
    import xgrammar as xgr

    calls = []
    for i, tool in enumerate(tools):
        fn = tool.function
        if only is not None and fn.name != only:
            continue
        schema = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        try:
            args = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
        except Exception as exc:  # xgrammar raises RuntimeError subclasses naming the schema problem
            field = f"tools[{i}].function.parameters"
            raise BadRequest(f"{field}: the schema of tool {fn.name!r} cannot be turned into a grammar: {exc}",
                             field) from exc  # fmt: skip
        head = "<tool_call>" + json.dumps({"name": fn.name, "arguments": 0}, ensure_ascii=False)[:-2]
        calls.append(xgr.Grammar.concat(
            xgr.Grammar.from_ebnf(f"root ::= {json.dumps(head, ensure_ascii=False)}"), args,
            xgr.Grammar.from_ebnf('root ::= "}</tool_call>"')))  # fmt: skip
    rules = [_root_renamed(xgr.Grammar.union(*calls) if len(calls) > 1 else calls[0], "interleaf_call")]
    if parallel and only is None:
        # No separator between calls: offered a newline there, SmolLM2 chains the same call until
        # max_tokens; offered only "<" or end-of-turn, it ends the turn.
        rules.append("interleaf_calls ::= interleaf_call+")
    else:
        rules.append("interleaf_calls ::= interleaf_call")
    if required or only is not None:
        rules.append("root ::= interleaf_calls")
    else:
        # Plain text may not open with "<": that first character is how the output commits to a call.
        rules.append("root ::= interleaf_calls | interleaf_text")
        rules.append("interleaf_text ::= [^<] [^]*")
    return "\n".join(reversed(rules)) + "\n"


# --- output parsing ------------------------------------------------------------------------------

_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def parse_tool_calls(text: str, names: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split hermes output into (content, OpenAI tool_calls); a block that does not parse stays content."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    for m in _CALL_RE.finditer(text):
        try:
            obj = json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
        if not (isinstance(obj, dict) and obj.get("name") in names and isinstance(obj.get("arguments", {}), dict)):
            continue
        kept.append(text[pos : m.start()])
        pos = m.end()
        calls.append({
            "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(obj.get("arguments", {}), ensure_ascii=False)},
        })  # fmt: skip
    kept.append(text[pos:])
    content = "".join(kept).strip() if calls else text
    return (content or None), calls


# --- building and answering ----------------------------------------------------------------------


class _Plan:
    """What one chat request turned into: the engine request and how to read its output."""

    def __init__(self, req: Req, tool_names: set[str], parse_tools: bool):
        self.req = req
        self.tool_names = tool_names
        self.parse_tools = parse_tools
        self.id = f"chatcmpl-{req.rid}"
        self.created = int(time.time())


def _choice_mode(body: ChatCompletionIn) -> tuple[str | None, bool]:
    """(named tool or None, whether a call is required); validates tool_choice against tools."""
    choice = body.tool_choice
    names = [t.function.name for t in body.tools or []]
    if (choice == "required" or isinstance(choice, NamedToolChoice)) and not names:
        shown = json.dumps(choice if isinstance(choice, str) else choice.model_dump())
        raise BadRequest(f"tool_choice={shown} needs tools; send tools or drop tool_choice", "tool_choice")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise BadRequest(f"tool_choice.function.name={choice.function.name!r} is not among tools {names}",
                             "tool_choice.function.name")  # fmt: skip
        return choice.function.name, True
    return None, choice == "required"


def build(engine: Engine, body: ChatCompletionIn) -> _Plan:
    if body.n != 1:
        raise BadRequest(f"n={body.n} is not supported by the embedded engine; send n requests", "n")
    if body.logprobs:
        raise BadRequest("logprobs=true is not supported by the embedded engine's chat route; use /generate",
                         "logprobs")  # fmt: skip
    names = [t.function.name for t in body.tools or []]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BadRequest(f"tools: function names must be unique, {dup} repeat", "tools")
    only, required = _choice_mode(body)
    use_tools = bool(body.tools) and body.tool_choice != "none"
    ebnf = json_schema = None
    if use_tools:
        if body.response_format is not None and body.response_format.type != "text":
            raise BadRequest(f"response_format.type={body.response_format.type!r} cannot be combined with tools; "
                             'send tool_choice="none" or drop response_format', "response_format")  # fmt: skip
        ebnf = tool_call_ebnf(body.tools or [], only=only, required=required, parallel=body.parallel_tool_calls)
    elif body.response_format is not None and body.response_format.type == "json_schema":
        js = body.response_format.json_schema
        if js is None or js.schema_ is None:
            raise BadRequest("response_format.json_schema.schema is required for type 'json_schema'",
                             "response_format.json_schema.schema")  # fmt: skip
        json_schema = json.dumps(js.schema_)
    elif body.response_format is not None and body.response_format.type == "json_object":
        json_schema = '{"type": "object"}'

    prompt = render_prompt(engine.tokenizer, body)
    ids = engine.tokenizer.encode(prompt, add_special_tokens=False)
    if len(ids) + 1 > engine.context_length:
        raise BadRequest(f"messages: the rendered prompt has {len(ids)} tokens, over the context length "
                         f"{engine.context_length}; shorten the conversation", "messages")  # fmt: skip
    max_new = body.max_completion_tokens or body.max_tokens or engine.context_length - len(ids)
    sp = SamplingParamsIn(
        max_new_tokens=max_new, temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p, top_k=body.top_k, min_p=body.min_p, stop=body.stop,
        sampling_seed=body.seed, frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        repetition_penalty=body.repetition_penalty, json_schema=json_schema, ebnf=ebnf,
    )  # fmt: skip
    try:
        params = engine.sampling_params(sp)
    except BadRequest as exc:  # name the OpenAI field, not the SGLang one
        param = (exc.param or "").removeprefix("sampling_params.")
        param = {"max_new_tokens": "max_tokens", "sampling_seed": "seed", "json_schema": "response_format"}.get(
            param, param)  # fmt: skip
        raise BadRequest(str(exc).replace(exc.param or "\0", param), param) from exc
    req = new_request(uuid.uuid4().hex, ids, params, stream=body.stream)
    if params.constrained:
        field = "tools" if ebnf is not None else "response_format"
        if engine.grammar is None:
            raise BadRequest(f"{field}: constrained decoding is not available on the sim executor; "
                             'send tool_choice="none" / no response_format', field)  # fmt: skip
        try:
            req.grammar = engine.grammar.matcher(engine.grammar.compile(params))
        except GrammarError as exc:
            raise BadRequest(f"{field}: {exc}", field) from exc
    return _Plan(req, set(names), parse_tools=use_tools)


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


def completion(engine: Engine, plan: _Plan) -> dict[str, Any]:
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


async def stream_chunks(engine: Engine, plan: _Plan, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE ``chat.completion.chunk`` events; tool calls are sent whole once the output is complete.

    Text that may still turn into a tool call (from ``<tool_call>`` on) or into a stop string is held
    back, so a client never sees text that the final answer does not contain.
    """
    req = plan.req
    assert req.queue is not None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created,
                "model": engine.model_name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    markers = [*req.params.stop, *(["<tool_call>"] if plan.parse_tools else [])]
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
                if "<tool_call>" in text:
                    text = text[: text.index("<tool_call>")]
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
