"""The hermes tool-call format: writing calls and results, reading a turn back, and the grammar's
options and schema handling (the agents' turn grammar: tests/agents/test_grammar.py; the OpenAI
route's: tests/runtime/test_engine_openai.py)."""

from __future__ import annotations

import json

import pytest
import xgrammar as xg
from xgrammar.testing import _is_grammar_accept_string

from interleaf.tools import (
    CALL_CLOSE,
    CALL_OPEN,
    GrammarOptions,
    ToolSchemaError,
    format_tool_call,
    format_tool_responses,
    parse_calls,
    parse_turn,
    tool,
    tool_call_grammar,
)
from interleaf.tools.call_format import CALL_TAIL, TEXT_EBNF, call_head


def accepts(ebnf: str, text: str) -> bool:
    return _is_grammar_accept_string(xg.Grammar.from_ebnf(ebnf), text)


def test_parse_turn_calls_answer_and_errors() -> None:
    t = parse_turn('think <tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>')
    assert t.reasoning == "think"
    assert [(c.name, c.arguments, c.error) for c in t.calls] == [("python", {"code": "print(1)"}, None)]
    assert t.answer is None and t.format_error is None

    t = parse_turn("so <ANSWER> 12 </ANSWER>")
    assert t.answer == "12" and not t.calls

    t = parse_turn('<tool_call>{"name": "python", "arguments": {"code": </tool_call>')
    assert t.calls[0].arguments is None and "not valid JSON" in (t.format_error or "")

    t = parse_turn('<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>')
    assert t.calls[0].arguments == {"x": 1}  # double-encoded arguments are accepted

    t = parse_turn('<tool_call>{"arguments": {}}</tool_call>')
    assert t.calls[0].error and "name" in t.calls[0].error


def test_written_calls_read_back_with_their_place_in_the_text() -> None:
    a, b = format_tool_call("f", {"x": "ü"}), format_tool_call("g", {})
    assert a == '<tool_call>{"name": "f", "arguments": {"x": "ü"}}</tool_call>'
    text = f"go {a}\n{b}<tool_call>" + '{"name": "h"'
    calls = parse_calls(text)
    assert [(c.name, c.arguments, c.closed) for c in calls] == [("f", {"x": "ü"}, True), ("g", {}, True),
                                                                 ("", None, False)]  # fmt: skip
    assert [text[c.start : c.end] for c in calls[:2]] == [a, b] and calls[2].end == len(text)
    assert (
        format_tool_responses(["1", "2"])
        == "<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response>"
    )


def test_grammar_pieces_spell_the_written_call() -> None:
    """The pieces grammars are built from (here and in the engine's OpenAI route) spell exactly what
    ``format_tool_call`` writes, around the arguments object."""
    args = {"x": [1, "y"]}
    assert CALL_OPEN + call_head("f") + json.dumps(args) + CALL_TAIL + CALL_CLOSE == format_tool_call("f", args)
    text = xg.Grammar.from_ebnf(f"root ::= {TEXT_EBNF}")
    assert _is_grammar_accept_string(text, "plain <b>text</b>") and not _is_grammar_accept_string(text, "<b>")


@tool
def add(a: int, b: int = 0) -> int:
    """Add."""
    return a + b


def test_options_text_parallel_and_one_named_tool() -> None:
    tools = [add.openai_schema(), {"name": "now"}]
    one, now = format_tool_call("add", {"a": 1}), format_tool_call("now", {})
    route = GrammarOptions(max_reasoning_chars=0, allow_answer=False, allow_text=True, parallel_calls=True)
    ebnf = tool_call_grammar(tools, route)
    assert accepts(ebnf, one + now) and accepts(ebnf, "plain text") and not accepts(ebnf, "<answer>1</answer>")
    assert not accepts(ebnf, format_tool_call("now", {"x": 1}))  # no parameters: only {}
    named = tool_call_grammar(tools, GrammarOptions(max_reasoning_chars=0, allow_answer=False, only_tool="now"))
    assert accepts(named, now) and not accepts(named, one) and not accepts(named, now + now)
    with pytest.raises(ValueError, match="only_tool='nope' is not among the tools"):
        tool_call_grammar(tools, GrammarOptions(only_tool="nope"))


def test_local_refs_are_followed_even_recursively() -> None:
    node = {"type": "object", "properties": {"n": {"type": "string"}, "kids": {"type": "array", "items": {
        "$ref": "#/$defs/Node"}}}, "required": ["n"], "additionalProperties": False}  # fmt: skip
    params = {"type": "object", "$defs": {"Node": node}, "properties": {"root": {"$ref": "#/$defs/Node"}},
              "required": ["root"]}  # fmt: skip
    schema = {"name": "tree", "parameters": params}
    ebnf = tool_call_grammar([schema])
    assert accepts(ebnf, format_tool_call("tree", {"root": {"n": "a", "kids": [{"n": "b", "kids": []}]}}))
    assert not accepts(ebnf, format_tool_call("tree", {"root": {"n": "a", "kids": [{"m": "b"}]}}))


def test_a_schema_that_is_not_a_json_schema_names_the_tool() -> None:
    bad = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}}
    with pytest.raises(ToolSchemaError, match=r"tools\[1\] \('f'\).*properties/x/type") as info:
        tool_call_grammar([add.openai_schema(), bad])
    assert (info.value.index, info.value.tool) == (1, "f")
    with pytest.raises(ToolSchemaError, match="points at nothing"):
        tool_call_grammar([{"name": "g", "parameters": {"$ref": "#/$defs/Missing"}}])
