"""What one chat request turns into: the body is checked, rendered and tokenized, its grammar chosen
and compiled, and an engine request built through the engine's own machinery
(``Engine.sampling_params``, ``new_request``, the grammar backend), so radix caching, metrics and
aborts behave as on ``/generate``."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from interleaf.runtime.engine.grammar import GrammarError
from interleaf.runtime.engine.openai.hermes import render_prompt, tool_call_ebnf
from interleaf.runtime.engine.openai.protocol import ChatCompletionIn, CompletionIn, NamedToolChoice
from interleaf.runtime.engine.protocol import BadRequest, GenerateIn, SamplingParamsIn
from interleaf.runtime.engine.request import Req
from interleaf.runtime.engine.scheduler import new_request

if TYPE_CHECKING:
    from interleaf.runtime.engine.engine import Engine


class ChatPlan:
    """One chat request as the engine runs it: the engine request and how to read its output."""

    def __init__(self, req: Req, tool_names: set[str], parse_tools: bool):
        self.req = req
        """The engine request (prompt ids, sampling parameters, grammar matcher)."""
        self.tool_names = tool_names
        """Names of the offered tools: calls of other names stay content."""
        self.parse_tools = parse_tools
        """Whether the output is read for tool calls (tools offered and ``tool_choice`` not ``none``)."""
        self.id = f"chatcmpl-{req.rid}"
        """The completion's id."""
        self.created = int(time.time())
        """The completion's creation time (Unix seconds)."""


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


def build(engine: Engine, body: ChatCompletionIn) -> ChatPlan:
    """The plan for ``body``; raises ``BadRequest`` naming the OpenAI field at fault."""
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
    ids = engine.encode(prompt, "messages")
    if len(ids) > engine.max_req_input_len:
        raise BadRequest(f"messages: the rendered prompt has {len(ids)} tokens, over the engine's longest prompt "
                         f"{engine.max_req_input_len} (context length {engine.context_length}, KV pool "
                         f"{engine.scheduler.cache.capacity}); shorten the conversation", "messages")  # fmt: skip
    max_new = body.max_completion_tokens or body.max_tokens or engine.max_req_input_len + 1 - len(ids)
    sp = SamplingParamsIn(
        max_new_tokens=max_new, temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p, top_k=body.top_k, min_p=body.min_p, stop=body.stop,
        sampling_seed=body.seed, frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        repetition_penalty=body.repetition_penalty, json_schema=json_schema, ebnf=ebnf, ignore_eos=body.ignore_eos,
    )  # fmt: skip
    try:
        params = engine.sampling_params(sp)
    except BadRequest as exc:
        raise _openai_named(exc, {"json_schema": "response_format"}) from exc
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
    return ChatPlan(req, set(names), parse_tools=use_tools)


def _openai_named(exc: BadRequest, extra: dict[str, str] | None = None) -> BadRequest:
    """``exc`` naming the OpenAI field rather than the SGLang one (``max_tokens``, not
    ``sampling_params.max_new_tokens``)."""
    param = (exc.param or "").removeprefix("sampling_params.")
    names = {"max_new_tokens": "max_tokens", "sampling_seed": "seed", **(extra or {})}
    head, sep, rest = param.partition("[")
    param = names.get(param, names.get(head, head) + sep + rest)
    return BadRequest(str(exc).replace(exc.param or "\0", param), param)


class CompletionPlan:
    """One ``/v1/completions`` request as the engine runs it: an engine request per prompt."""

    def __init__(self, reqs: list[Req], prompts: list[str]):
        self.reqs = reqs
        """One engine request per prompt, in the order of ``prompt``."""
        self.prompts = prompts
        """Each prompt's text, for ``echo`` ("" when ``echo`` is off)."""
        self.id = f"cmpl-{reqs[0].rid}"
        """The completion's id."""
        self.created = int(time.time())
        """The completion's creation time (Unix seconds)."""


def build_completion(engine: Engine, body: CompletionIn) -> CompletionPlan:
    """The plan for a text completion; raises ``BadRequest`` naming the OpenAI field at fault."""
    if body.n != 1:
        raise BadRequest(f"n={body.n} is not supported by the embedded engine; send n requests", "n")
    if body.logprobs is not None:
        raise BadRequest("logprobs is not supported by the embedded engine's completions route; use /generate "
                         "with return_logprob", "logprobs")  # fmt: skip
    if body.suffix:
        raise BadRequest("suffix is not supported: the engine does no fill-in-the-middle; drop it", "suffix")
    prompt = body.prompt
    if isinstance(prompt, str):
        items: list[str | list[int]] = [prompt]
    elif prompt and isinstance(prompt[0], int):
        items = [prompt]  # type: ignore[list-item]
    else:
        items = list(prompt)  # type: ignore[arg-type]
    if not items:
        raise BadRequest("prompt: the list of prompts is empty; send at least one", "prompt")
    if body.stream and len(items) > 1:
        raise BadRequest(f"prompt: streaming takes one prompt, got {len(items)}; send them as separate requests",
                         "prompt")  # fmt: skip
    sp = SamplingParamsIn(
        max_new_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
        min_p=body.min_p, stop=body.stop, stop_token_ids=body.stop_token_ids, ignore_eos=body.ignore_eos,
        skip_special_tokens=body.skip_special_tokens, sampling_seed=body.seed,
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        repetition_penalty=body.repetition_penalty, json_schema=body.json_schema, regex=body.regex, ebnf=body.ebnf,
    )  # fmt: skip
    gen = GenerateIn(sampling_params=sp, stream=body.stream)
    reqs, prompts = [], []
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else None
        ids = None if isinstance(item, str) else item
        where = "prompt" if len(items) == 1 else f"prompt[{i}]"
        try:
            reqs.append(engine.build_request(gen, text, ids, field=where))
        except BadRequest as exc:
            raise _openai_named(exc, {"input_ids": where}) from exc
        prompts.append("" if not body.echo else text if text is not None else engine.tokenizer.decode(ids))
    return CompletionPlan(reqs, prompts)


__all__ = ["ChatPlan", "CompletionPlan", "build", "build_completion"]
