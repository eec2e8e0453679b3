"""Grounded string arguments: a search query only a span of the question, a url only one seen, and
the calculator's ``round``; each checked on the real xgrammar grammar."""

from __future__ import annotations

import json

from interleaf.agents import load_suite
from interleaf.tools import (
    GrammarOptions,
    Toolset,
    calculator,
    numbers_in,
    python_tool,
    question_spans,
    tool_call_grammar,
    urls_in,
)
from interleaf.tools.builtin.calculator import evaluate
from tests.grammar_check import can_end

_QUESTION = "How many years after Vesolpel was Greta Minor founded? (Negative if before.)"
_SEEN = "1. [Vesolpel](https://wiki.interleaf.local/vesolpel)\n   Vesolpel is a town."


def _call(name: str, **arguments: object) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}</tool_call>'


def _corpus_tools() -> list:
    return load_suite("mixed", 2).make_tools()  # search, visit, calculator


def test_question_spans_are_short_runs_of_words_with_names_whole() -> None:
    spans = question_spans(_QUESTION)
    for good in ["Vesolpel", "Greta Minor", "after Vesolpel", "Vesolpel was Greta Minor", "Negative if before"]:
        assert good in spans, good
    for bad in [
        "Greta",  # a name is never cut
        "Minor founded",
        "Vespelpel",
        "founded Negative",  # across the bracket
        "many years after Vesolpel was",  # five units
        "founded?",
    ]:
        assert bad not in spans, bad
    assert "How" in spans  # the sentence's first word is no name
    assert len(spans) == len(set(spans))


def test_urls_in_finds_each_url_once_without_trailing_punctuation() -> None:
    assert urls_in([_SEEN, "see https://a.example/x.", "https://wiki.interleaf.local/vesolpel"]) == (
        "https://wiki.interleaf.local/vesolpel",
        "https://a.example/x",
    )
    assert urls_in(["no url here"]) == ()


def test_a_search_query_is_only_a_span_of_the_question_and_a_url_only_one_seen() -> None:
    schemas = Toolset(_corpus_tools()).schemas()
    opts = GrammarOptions(
        max_reasoning_chars=0, grounded_spans=tuple(question_spans(_QUESTION)), grounded_urls=urls_in([_SEEN])
    )
    ebnf = tool_call_grammar(schemas, opts)
    for good in (["Vesolpel", "Greta Minor"], ["Greta Minor"], ["Vesolpel was Greta Minor"]):
        assert can_end(ebnf, _call("search", query=good)), good
    for bad in (["Vespelpel"], ["Vesolpel", "Greta"], ["Kave"], ["vesolpel"], ["Vesolpel founded"]):
        assert not can_end(ebnf, _call("search", query=bad)), bad
    visit = {"url": "https://wiki.interleaf.local/vesolpel", "goal": "any goal at all"}
    assert can_end(ebnf, _call("visit", **visit))  # the goal is a plain string: free
    assert not can_end(ebnf, _call("visit", **{**visit, "url": "https://wiki.interleaf.local/vespelpel"}))
    # Without grounded texts (or without argument constraints) the query and the url are free.
    for free in (
        GrammarOptions(max_reasoning_chars=0),
        GrammarOptions(max_reasoning_chars=0, grounded_spans=opts.grounded_spans, constrain_arguments=False),
    ):
        ebnf = tool_call_grammar(schemas, free)
        assert can_end(ebnf, _call("search", query=["Vespelpel"]))
        assert can_end(ebnf, _call("visit", **{**visit, "url": "https://x.example/"}))


def test_a_plain_string_without_the_marker_stays_free_text() -> None:
    opts = GrammarOptions(max_reasoning_chars=0, grounded_spans=("Vesolpel",), grounded_urls=("https://a.example/",))
    ebnf = tool_call_grammar([python_tool.openai_schema()], opts)
    assert can_end(ebnf, _call("python", code="print(1 + 1)"))


def test_the_calculator_rounds_and_its_grammar_admits_round_with_grounded_numbers() -> None:
    assert evaluate("round(11179 / 172701, 2)") == 0.06
    question = "What is the population of Kaka divided by that of Felith, rounded to 2 decimals?"
    numbers = numbers_in([question, "Kaka had a population of 11179.", "Felith had a population of 172701."])
    opts = GrammarOptions(max_reasoning_chars=0, grounded_numbers=numbers)
    ebnf = tool_call_grammar([calculator.openai_schema()], opts)
    assert can_end(ebnf, _call("calculator", expression="round(11179 / 172701, 2)"))
    assert not can_end(ebnf, _call("calculator", expression="round(11179 / 172701, 3)"))  # 3 is not grounded
    assert not can_end(ebnf, _call("calculator", expression="sqrt(11179)"))  # no other function
