"""The turn grammar compiles with xgrammar and admits exactly the calls the tool schemas allow."""

from __future__ import annotations

import pytest
import xgrammar as xg

from interleaf.agents import load_suite
from interleaf.tools import GrammarOptions, tool_call_grammar

_VOCAB = [chr(i) for i in range(32, 127)] + ["\n"]


def _can_end(ebnf: str, text: str) -> bool:
    grammar = xg.Grammar.from_ebnf(ebnf)
    info = xg.TokenizerInfo([*_VOCAB, "<eos>"], stop_token_ids=[len(_VOCAB)])
    m = xg.GrammarMatcher(xg.GrammarCompiler(info).compile_grammar(grammar))
    return bool(m.accept_string(text)) and bool(m.accept_token(len(_VOCAB)))


@pytest.mark.parametrize("suite", ["arith", "lookup", "mixed"])
def test_suite_grammars_compile(suite: str) -> None:
    tools = load_suite(suite, 2).make_tools()
    ebnf = tool_call_grammar([t.openai_schema() for t in tools])
    xg.Grammar.from_ebnf(ebnf)  # raises on a syntax error


def test_grammar_accepts_valid_calls_and_answers() -> None:
    tools = [t.openai_schema() for t in load_suite("mixed", 2).make_tools()]
    ebnf = tool_call_grammar(tools)
    ok = [
        'Let me search.<tool_call>{"name": "search", "arguments": {"query": ["Veldmark founded"]}}</tool_call>',
        '<tool_call>{"name": "visit", "arguments": {"url": "https://x", "goal": "year"}}</tool_call>',
        '<tool_call>{"name": "calculator", "arguments": {"expression": "(1742 - 1650) mod 7"}}</tool_call>',
        "It is 3.<answer>3</answer>",
    ]
    for text in ok:
        assert _can_end(ebnf, text), text


def test_grammar_rejects_what_schemas_forbid() -> None:
    tools = [t.openai_schema() for t in load_suite("mixed", 2).make_tools()]
    ebnf = tool_call_grammar(tools)
    bad = [
        '<tool_call>{"name": "browse", "arguments": {}}</tool_call>',  # unknown tool
        '<tool_call>{"name": "calculator", "arguments": {"expression": 3}}</tool_call>',  # wrong type
        '<tool_call>{"name": "visit", "arguments": {"url": "https://x"}}</tool_call>',  # missing goal
        '<tool_call>{"name": "search", "arguments": {"query": []}}</tool_call>',  # minItems 1
        '<tool_call>{"name": "search", "arguments": {"query": ["a", "b", "c", "d", "e", "f"]}}</tool_call>',
        "just some text with no action",
    ]
    for text in bad:
        assert not _can_end(ebnf, text), text


def test_options_shape_the_grammar() -> None:
    tools = [t.openai_schema() for t in load_suite("arith", 1).make_tools()]
    forced = tool_call_grammar(tools, GrammarOptions(allow_answer=False, max_reasoning_chars=0))
    assert not _can_end(forced, "<answer>1</answer>")
    assert not _can_end(forced, 'x<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}</tool_call>')
    assert _can_end(forced, '<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}</tool_call>')
    short = tool_call_grammar(tools, GrammarOptions(max_reasoning_chars=5))
    assert _can_end(short, "abcde<answer>1</answer>")
    assert not _can_end(short, "abcdef<answer>1</answer>")


def test_optional_properties_any_in_order_subset() -> None:
    schema = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"enum": ["x", "y"]}},
        },
    }
    ebnf = tool_call_grammar([schema])
    for args in [
        "{}",
        '{"a": 1}',
        '{"b": true}',
        '{"c": "y"}',
        '{"a": -2, "c": "x"}',
        '{"a": 0, "b": false, "c": "x"}',
    ]:
        assert _can_end(ebnf, f'<tool_call>{{"name": "f", "arguments": {args}}}</tool_call>'), args
    for args in ['{"c": "z"}', '{"b": true, "a": 1}', '{"a": 01}']:
        assert not _can_end(ebnf, f'<tool_call>{{"name": "f", "arguments": {args}}}</tool_call>'), args


def test_no_action_possible_is_an_error() -> None:
    with pytest.raises(ValueError, match="no valid action"):
        tool_call_grammar([], GrammarOptions(allow_answer=False))


def test_argument_schemas_constrain_what_the_model_can_write() -> None:
    """The failures of issue 13: prose and made-up names as calculator expressions cannot be written;
    with ``constrain_arguments=False`` (types only) they can."""
    tools = [t.openai_schema() for t in load_suite("arith", 1).make_tools()]
    full, loose = tool_call_grammar(tools), tool_call_grammar(tools, GrammarOptions(constrain_arguments=False))
    for expr in ["Compute (18 * (55 - 80)) % 10", "compute_result_mod_34_17", "print(2)", ""]:
        text = f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expr}"}}}}</tool_call>'
        assert not _can_end(full, text), expr
        assert _can_end(loose, text), expr
    good = '<tool_call>{"name": "calculator", "arguments": {"expression": "(31 mod 34) ^ 2"}}</tool_call>'
    assert _can_end(full, good)


def test_the_answer_type_constrains_the_answer() -> None:
    from interleaf.agents.tasks import ANSWER_PATTERNS

    tools = [t.openai_schema() for t in load_suite("arith", 1).make_tools()]
    number = tool_call_grammar(tools, GrammarOptions(answer_pattern=ANSWER_PATTERNS["number"]))
    for ok in ["<answer>-450</answer>", "<answer>0.75</answer>", "<answer>63302</answer>"]:
        assert _can_end(number, ok), ok
    for bad in ["<answer>The answer is 5</answer>", "<answer>5.</answer>", "<answer></answer>", "<answer>1e3</answer>"]:
        assert not _can_end(number, bad), bad
    assert _can_end(tool_call_grammar(tools), "<answer>The answer is 5</answer>")
    choice = tool_call_grammar([], GrammarOptions(answer_pattern="UP|DOWN"))
    assert _can_end(choice, "<answer>UP</answer>") and not _can_end(choice, "<answer>LEFT</answer>")
    with pytest.raises(ValueError, match="answer_pattern"):
        GrammarOptions(answer_pattern="(?=lookahead)")
