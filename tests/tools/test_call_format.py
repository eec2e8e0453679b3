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


# --- value constraints: pattern, lengths, numeric ranges (tools/regex_ebnf.py, schema_grammar.py) ---


def _arg_grammar(prop: dict, options: GrammarOptions | None = None) -> str:
    schema = {"name": "f", "parameters": {"type": "object", "properties": {"x": prop}, "required": ["x"]}}
    return tool_call_grammar([schema], options or GrammarOptions(allow_answer=False, max_reasoning_chars=0))


def _call(value: str) -> str:
    return f'<tool_call>{{"name": "f", "arguments": {{"x": {value}}}}}</tool_call>'


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (r"^(?:[0-9.+\-*/%^() ]|mod)+$", ["(3 + 4) mod 5", "2^3"], ["x", "", "mo", "3 dom"]),
        (r"^[a-z]{2,4}\d?$", ["ab", "abcd1"], ["a", "abcde", "ab12", "AB"]),
        (r"https://wiki\.local/[a-z]+", ["https://wiki.local/kave"], ["https://wikixlocal/k", "https://wiki.local/"]),
        (r"-?\d+(?:\.\d+)?", ["-12", "3.5"], ["3.", "--1"]),
        (r"UP|DOWN", ["UP", "DOWN"], ["UPDOWN", "up"]),
        (r"a\"b.", ['a\\"bz'], ['a\\"b"', 'a\\"b\\\\']),  # quotes escaped; '.' never a quote or backslash
    ],
)
def test_string_patterns_are_enforced(pattern: str, good: list[str], bad: list[str]) -> None:
    ebnf = _arg_grammar({"type": "string", "pattern": pattern})
    for text in good:
        assert accepts(ebnf, _call(f'"{text}"')), text
    for text in bad:
        assert not accepts(ebnf, _call(f'"{text}"')), text
    loose = _arg_grammar({"type": "string", "pattern": pattern}, GrammarOptions(constrain_arguments=False))
    assert all(accepts(loose, _call(f'"{text}"')) for text in bad if "\\" not in text and '"' not in text)


def test_unsupported_patterns_leave_the_string_to_the_tool_and_are_reported_by_the_converter() -> None:
    from interleaf.tools import RegexNotSupported, regex_to_ebnf

    for pattern in [r"(?=a)b", r"(a)\1", "a{2", "[a", "a)"]:
        with pytest.raises(RegexNotSupported, match="not supported"):
            regex_to_ebnf(pattern)
    for valid_but_unsupported in [r"(?=a)b", r"(a)\1"]:
        assert accepts(_arg_grammar({"type": "string", "pattern": valid_but_unsupported}), _call('"anything"'))


def test_string_lengths_are_enforced() -> None:
    ebnf = _arg_grammar({"type": "string", "minLength": 2, "maxLength": 4})
    assert accepts(ebnf, _call('"ab"')) and accepts(ebnf, _call('"abcd"'))
    assert not accepts(ebnf, _call('"a"')) and not accepts(ebnf, _call('"abcde"'))


@pytest.mark.parametrize(
    ("bounds", "lo", "hi"),
    [
        ({"minimum": -5, "maximum": 120}, -5, 120),
        ({"minimum": 17, "maximum": 342}, 17, 342),
        ({"minimum": -300, "maximum": -17}, -300, -17),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, 1, 9),
        ({"minimum": 3}, 3, None),
        ({"maximum": 10}, None, 10),
    ],
)
def test_integer_ranges_are_enforced_exactly(bounds: dict, lo: int | None, hi: int | None) -> None:
    ebnf = _arg_grammar({"type": "integer", **bounds})
    first, last = (lo if lo is not None else -1000), (hi if hi is not None else 1000)
    for v in [*range(first - 25, first + 25), *range(last - 25, last + 25), 10**17, -(10**17)]:
        inside = (lo is None or v >= lo) and (hi is None or v <= hi)
        assert accepts(ebnf, _call(str(v))) == inside, v
    assert not accepts(ebnf, _call("007"))


def test_number_minimum_forbids_the_sign_only() -> None:
    ebnf = _arg_grammar({"type": "number", "minimum": 0})
    assert accepts(ebnf, _call("2.5")) and accepts(ebnf, _call("1e3"))
    assert not accepts(ebnf, _call("-2.5"))


def test_calculator_schema_restricts_its_expression_to_arithmetic() -> None:
    from interleaf.tools import calculator

    prop = calculator.parameters["properties"]["expression"]
    assert prop["pattern"] and prop["maxLength"] == 200
    ebnf = tool_call_grammar([calculator.openai_schema()], GrammarOptions(allow_answer=False, max_reasoning_chars=0))
    expression = "((31 mod 34) * (17 + 75 * 27))^2"
    ok = f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}</tool_call>'
    assert accepts(ebnf, ok)
    assert not accepts(ebnf, ok.replace("31 mod 34", "x"))


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("[" * 1000 + "]" * 1000, "tool call cannot be used: nested too deeply: the limit is 64 levels"),
        ("[" * 70 + "]" * 70, "tool call cannot be used: field 'x.0.0.0....."),
        ("1" + "0" * 4300, "tool call cannot be used: the integer 10000000000000000000... has 4301 digits"),
        ("NaN", "tool call cannot be used: NaN is not a JSON number"),
        ('"\\udfff"', "tool call cannot be used: field 'x': the string holds a lone surrogate"),
    ],
)
def test_json_no_tool_can_take_is_a_format_error(arguments: str, error: str) -> None:
    text = f'{CALL_OPEN}{{"name": "f", "arguments": {{"x": {arguments}}}}}{CALL_CLOSE}'
    turn = parse_turn(text)
    assert turn.calls[0].arguments is None and turn.format_error.startswith(error), turn.format_error
    # Double-encoded arguments are read the same way.
    encoded = json.dumps(json.dumps({"x": 1})).replace("1", arguments.replace('"', '\\"'), 1)
    doubled = parse_turn(f'{CALL_OPEN}{{"name": "f", "arguments": {encoded}}}{CALL_CLOSE}')
    assert doubled.format_error.startswith("tool call cannot be used"), doubled.format_error
