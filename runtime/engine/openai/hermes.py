"""The OpenAI route's hermes handling: a chat request becomes a prompt (the model's chat template,
tools in hermes text), the offered tools become the output grammar, and the calls in the output
become OpenAI ``tool_calls``. The format itself is
``interleaf.tools.call_format``, shared with the agents.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from typing import Any, Protocol

from interleaf.runtime.engine.openai.protocol import ChatCompletionIn, ToolCallIn, ToolDef
from interleaf.runtime.engine.protocol import BadRequest, unicode_text
from interleaf.tools.call_format import (
    CALL_CLOSE,
    CALL_OPEN,
    CALL_TAIL,
    TEXT_EBNF,
    call_head,
    format_tool_call,
    format_tool_responses,
    parse_calls,
    tools_system_prompt,
)


class ChatTemplateTokenizer(Protocol):
    """What rendering needs of a tokenizer (Hugging Face's have both)."""

    chat_template: str | None
    """The Jinja chat template; one that mentions ``tools`` renders them itself."""

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """Render ``messages`` (``tools=``, ``add_generation_prompt=``, ``tokenize=`` as keywords)."""
        ...


# --- the prompt ----------------------------------------------------------------------------------


def _text(content: str | list[dict[str, Any]] | None, field: str) -> str:
    if content is None or isinstance(content, str):
        return unicode_text(content or "", field)
    parts = []
    for i, part in enumerate(content):
        if part.get("type") != "text":
            raise BadRequest(f"{field}[{i}]: only text parts are supported by the embedded engine, got type "
                             f"{part.get('type')!r}; send the content as a string", f"{field}[{i}]")  # fmt: skip
        if not isinstance(part.get("text"), str):
            raise BadRequest(f"{field}[{i}].text: a text part needs a string 'text', got "
                             f"{json.dumps(part.get('text'))[:80]}", f"{field}[{i}].text")  # fmt: skip
        parts.append(unicode_text(part["text"], f"{field}[{i}].text"))
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


def tool_schemas(tools: list[ToolDef]) -> list[dict[str, Any]]:
    """The tools as OpenAI-style schema dicts (what templates and the grammar read)."""
    return [t.model_dump(exclude_none=True) for t in tools]


def hermes_messages(body: ChatCompletionIn) -> list[dict[str, str]]:
    """Messages with tools, tool calls and tool results spelled out in hermes text (for plain templates)."""
    out: list[dict[str, str]] = []
    results: list[str] = []  # consecutive tool results share one user turn, as in Qwen's template

    def flush_results() -> None:
        if results:
            out.append({"role": "user", "content": format_tool_responses(results)})
            results.clear()

    for i, m in enumerate(body.messages):
        field = f"messages[{i}]"
        content = _text(m.content, f"{field}.content")
        if m.role == "tool":
            results.append(content)
            continue
        flush_results()
        if m.role == "assistant" and m.tool_calls:
            calls = [format_tool_call(c.function.name, _arguments(c, f"{field}.tool_calls[{j}].function.arguments"))
                     for j, c in enumerate(m.tool_calls)]  # fmt: skip
            content = content + "\n" + "".join(calls) if content else "".join(calls)  # as the grammar writes them
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    flush_results()
    if body.tools:
        block = tools_system_prompt(tool_schemas(body.tools))
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


def render_prompt(tokenizer: ChatTemplateTokenizer, body: ChatCompletionIn) -> str:
    """The prompt text: the model's chat template over the messages, tools in hermes style.

    A template that mentions ``tools`` renders them itself; others (SmolLM2's) get the hermes
    system block and hermes-formatted tool turns from us.
    """
    native = "tools" in (tokenizer.chat_template or "")
    messages = native_messages(body) if native else hermes_messages(body)
    tools = tool_schemas(body.tools) if native and body.tools else None
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja raises TemplateError or TypeError on messages it cannot render
        raise BadRequest(f"messages: the model's chat template cannot render them: {exc}", "messages") from exc


# --- the grammar ---------------------------------------------------------------------------------


def _root_renamed(grammar: Any, name: str) -> str:
    """The grammar's EBNF with its root rule renamed (xgrammar names every other rule root_N / basic_*)."""
    text = str(grammar)
    renamed, n = re.subn(r"^root ::= ", f"{name} ::= ", text, count=1, flags=re.M)
    assert n == 1, f"xgrammar printed no root rule:\n{text[:500]}"
    return renamed


def _literal(text: str) -> str:
    """An EBNF string literal matching ``text`` exactly."""
    return json.dumps(text, ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _ebnf(tools_json: str, only: str | None, required: bool, parallel: bool) -> str:
    # Clients send the same tools with every turn of a conversation: build their grammar once.
    import xgrammar as xgr  # the engine's grammar backend; loaded with the first tool grammar

    calls = []
    for i, (name, schema) in enumerate(json.loads(tools_json)):
        if only is not None and name != only:
            continue
        try:
            args = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
        except Exception as exc:  # xgrammar raises RuntimeError subclasses naming the schema problem
            field = f"tools[{i}].function.parameters"
            raise BadRequest(f"{field}: the schema of tool {name!r} cannot be turned into a grammar: {exc}",
                             field) from exc  # fmt: skip
        head = xgr.Grammar.from_ebnf(f"root ::= {_literal(CALL_OPEN + call_head(name))}")
        tail = xgr.Grammar.from_ebnf(f"root ::= {_literal(CALL_TAIL + CALL_CLOSE)}")
        calls.append(xgr.Grammar.concat(head, args, tail))
    rules = [_root_renamed(xgr.Grammar.union(*calls) if len(calls) > 1 else calls[0], "interleaf_call")]
    # Back to back, no separator (call_format.GrammarOptions.parallel_calls says why).
    rules.append("interleaf_calls ::= interleaf_call" + ("+" if parallel and only is None else ""))
    if required or only is not None:
        rules.append("root ::= interleaf_calls")
    else:
        rules.append("root ::= interleaf_calls | interleaf_text")
        rules.append(f"interleaf_text ::= {TEXT_EBNF}")
    return "\n".join(reversed(rules)) + "\n"


def tool_call_ebnf(tools: list[ToolDef], *, only: str | None, required: bool, parallel: bool) -> str:
    """EBNF (xgrammar) for the output: plain text or hermes calls of the offered tools.

    ``only`` restricts the calls to one named tool (exactly one call); ``required`` drops the plain-text
    branch; ``parallel`` allows several calls back to back. Each call's arguments follow its tool's
    parameter schema as xgrammar's JSON-schema converter reads it (strict: no extra keys; ``pattern``,
    lengths, bounds and ``format`` enforced), printed as ``json.dumps`` prints them; no ``parameters``
    means the empty object. A schema xgrammar rejects is a ``BadRequest`` naming
    ``tools[i].function.parameters``.
    """
    specs = [(t.function.name, t.function.parameters if t.function.parameters is not None else
              {"type": "object", "properties": {}}) for t in tools]  # fmt: skip
    return _ebnf(json.dumps(specs), only, required, parallel)


# --- the output ----------------------------------------------------------------------------------


def parse_tool_calls(text: str, names: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split hermes output into (content, OpenAI tool_calls).

    A closed block that does not parse, or names a tool not in ``names``, stays content. A block the
    output ends inside (``max_tokens`` or a stop string cut it) is never content: if its JSON is
    complete it is a call; if its name is written, a call whose ``arguments`` is the partial JSON text
    written so far (what OpenAI returns, and what SGLang and vLLM stream, with ``finish_reason``
    ``"length"``); otherwise it is dropped. docs/engine-openai.md, "Truncated tool calls".
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    for call in parse_calls(text):
        if call.closed and (call.error is not None or call.name not in names):
            continue
        kept.append(text[pos : call.start])
        pos = call.end
        if call.error is None and call.name in names:
            calls.append(_openai_call(call.name, json.dumps(call.arguments, ensure_ascii=False)))
        elif not call.closed and (cut := _cut_call(call.raw, names)) is not None:
            calls.append(_openai_call(*cut))
    tail = text[pos:]
    if tail.strip() and CALL_OPEN.startswith(tail.strip()):  # cut inside a call's opening tag: a dropped fragment
        tail = ""
        pos = len(text)
    kept.append(tail)
    content = "".join(kept).strip() if pos else text
    return (content or None), calls


def _openai_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": arguments}}  # fmt: skip


def _cut_call(raw: str, names: set[str]) -> tuple[str, str] | None:
    """(name, arguments text) of a call cut off after its name, as the grammar writes calls: the arguments
    as JSON when the object is complete and only (part of) the call's closing brace and tag is missing,
    else the partial text written so far."""
    body = raw.lstrip()
    for name in names:
        head = call_head(name)
        if body.startswith(head):
            rest = body[len(head) :]
            closing = CALL_TAIL + CALL_CLOSE
            for k in range(min(len(closing), len(rest)), -1, -1):
                if rest.endswith(closing[:k]):
                    try:
                        args = json.loads(rest[: len(rest) - k])
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(args, dict):
                        return name, json.dumps(args, ensure_ascii=False)
            return name, rest
    return None


__all__ = [
    "ChatTemplateTokenizer",
    "hermes_messages",
    "native_messages",
    "parse_tool_calls",
    "render_prompt",
    "tool_call_ebnf",
    "tool_schemas",
]
