"""Grounded text: a free-text answer may be only a short span of the tool outputs, checked on the real grammar."""

from __future__ import annotations

import time

from interleaf.agents.tasks.world import corpus_tools, documents, make_towns
from interleaf.tools import (
    GrammarOptions,
    calculator,
    numbers_in,
    passages_about,
    relevant_sentences,
    text_spans,
    tool_call_grammar,
)
from interleaf.tools.text_grounding import MAX_SPAN_WORDS, question_names, spans_ebnf
from tests.grammar_check import can_end, compile_ebnf

_RESULT = """## Results for 'Solka'
1. [Solka](https://wiki.interleaf.local/solka)
   Solka is a town in Westfold, on the banks of the Velka river. It was founded in 1129 by Greta Othqua. \
The town is known for glass making. At the last census Solka had a population of 42780."""
_QUESTION = "Who founded the town of Solka?"


def _grammar(spans: tuple[str, ...] | None, pattern: str | None = None) -> str:
    opts = GrammarOptions(max_reasoning_chars=0, answer_spans=spans, answer_pattern=pattern)
    return tool_call_grammar([calculator.openai_schema()], opts)


def test_spans_are_short_runs_of_one_sentence_not_only_question_words() -> None:
    spans = text_spans([_RESULT], question=_QUESTION)
    for good in ["Greta Othqua", "by Greta Othqua", "glass making", "Velka", "Velka river", "42780", "Westfold"]:
        assert good in spans, good
    for bad in [
        "Solka",  # only the question's words
        "the town",
        "Othqua The",  # across a sentence end
        "river It",
        "https://wiki.interleaf.local/solka",  # urls are no answer
        "Solka](https",
        "founded in 1129 by Greta",  # longer than MAX_SPAN_WORDS
    ]:
        assert bad not in spans, bad
    assert all(len(s.split(" ")) <= MAX_SPAN_WORDS for s in spans)
    assert len(spans) == len(set(spans))
    assert text_spans([_RESULT], question=_QUESTION, limit=5) == spans[:5]


def test_text_answer_allowed_only_as_a_span_of_the_outputs() -> None:
    ebnf = _grammar(tuple(text_spans([_RESULT], question=_QUESTION)))
    for good in ["Greta Othqua", "glass making", "Velka"]:
        assert can_end(ebnf, f"<answer>{good}</answer>"), good
    for bad in ["Solka", "Ada Kaith", "Greta", "Greta Othqua Velka", "greta othqua", "salt mining", "Othqua The"]:
        ok = bad == "Greta"  # a prefix of a span is itself a span
        assert can_end(ebnf, f"<answer>{bad}</answer>") is ok, bad
    # Calls are untouched by the answer spans.
    assert can_end(ebnf, '<tool_call>{"name": "calculator", "arguments": {"expression": "1 + 2"}}</tool_call>')


def test_without_spans_or_with_a_pattern_the_answer_is_as_before() -> None:
    spans = tuple(text_spans([_RESULT], question=_QUESTION))
    assert can_end(_grammar(None), "<answer>Ada Kaith</answer>")
    assert can_end(_grammar(()), "<answer>Ada Kaith</answer>")
    number = r"-?[0-9]{1,24}(\.[0-9]{1,12})?"
    assert can_end(_grammar(spans, number), "<answer>7</answer>")  # the task's pattern wins
    assert not can_end(_grammar(spans, number), "<answer>Greta Othqua</answer>")


def test_spans_ebnf_refuses_an_empty_set() -> None:
    try:
        spans_ebnf([], "a")
    except ValueError as exc:
        assert "no spans" in str(exc)
    else:
        raise AssertionError("spans_ebnf([]) built a grammar that admits nothing")


def test_a_full_search_result_builds_and_compiles_quickly() -> None:
    # Five hits for each of three queries: the largest output the lookup tools give.
    docs = documents(make_towns(40, 0))
    search = corpus_tools(docs)[0]
    out = search(query=["town river", "population census", "founded by"])
    spans = tuple(text_spans([out], question="Who founded the town of Kave?"))
    assert len(spans) > 200
    start = time.perf_counter()
    compiled = compile_ebnf(_grammar(spans))
    elapsed = time.perf_counter() - start
    assert compiled is not None
    print(f"{len(spans)} spans compiled in {elapsed * 1000:.0f} ms")  # a figure, not an assertion


_TWO = (
    _RESULT
    + """

## Results for 'Kave'
1. [Kave](https://wiki.interleaf.local/kave)
   Kave is a town in Highmoor, on the banks of the Dramin river. It was founded in 1383 by Ines Ithmin. \
At the last census Kave had a population of 191131."""
)


def _calc(expression: str) -> str:
    return f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}</tool_call>'


def test_relevant_sentences_keep_the_asked_fact_and_bare_results() -> None:
    population = relevant_sentences("What is the combined population of Solka and Kave?", [_TWO])
    assert numbers_in(population) == ("42780", "191131")  # no founding year, no list number "1."
    years = relevant_sentences("How many years after Solka was Kave founded? (Negative if before.)", [_TWO])
    assert numbers_in(years) == ("1129", "1383")
    assert relevant_sentences("Compute (18 * 3) mod 7", ["-450"]) == ["-450"]  # a bare result stays
    # Nothing relevant holds a number: no filter rather than no numbers.
    assert numbers_in(relevant_sentences("Who is Ada?", ["Result: 42."])) == ("42",)


def test_relevance_filtered_numbers_on_the_real_grammar() -> None:
    question = "What is the combined population of Solka and Kave?"
    numbers = numbers_in([question, *relevant_sentences(question, [_TWO])])
    opts = GrammarOptions(max_reasoning_chars=0, grounded_numbers=numbers)
    ebnf = tool_call_grammar([calculator.openai_schema()], opts)
    assert can_end(ebnf, _calc("42780 + 191131"))
    for bad in ["1129 + 1383", "42780 + 1383", "1 + 42780", "42780 + 191131 + 1"]:
        assert not can_end(ebnf, _calc(bad)), bad


_DISTRACTOR = """## Results for 'Kapel'
1. [Kapel](https://wiki.interleaf.local/kapel)
   Kapel is a town in Westfold, on the banks of the Lorlor river. It was founded in 1488 by Dmitri Kave. \
At the last census Kapel had a population of 68302.
2. [Quaithlor](https://wiki.interleaf.local/quaithlor)
   Quaithlor is a town in the Reed Coast, on the banks of the Kapel river. It was founded in 1879 by Elin Zorfel. \
At the last census Quaithlor had a population of 169600."""


def test_relevant_numbers_come_from_the_passages_about_the_question_names() -> None:
    assert question_names("How many years after Kapel was Greta Minor founded? (Negative if before.)") == [
        "Kapel",
        "Greta Minor",
    ]
    population = relevant_sentences("What is the combined population of Kapel and Brubrupel?", [_DISTRACTOR, "-450"])
    assert numbers_in(population) == ("68302", "450")  # not the town on the Kapel river; the bare result stays
    years = relevant_sentences("How many years after Kapel was Brubrupel founded?", [_DISTRACTOR])
    assert numbers_in(years) == ("1488",)
    # A page read with visit opens with its title as a heading.
    page = "# Kapel\nURL: https://wiki.interleaf.local/kapel\nGoal: population\n\nKapel had a population of 68302."
    kapel = relevant_sentences("What is the population of Kapel?", [page, _DISTRACTOR])
    assert numbers_in(kapel) == ("68302", "68302")  # the page's and the hit's: repeats kept
    # No passage about a question name: the content-word filter alone.
    assert numbers_in(relevant_sentences("What is the combined population of Solka and Kave?", [_DISTRACTOR])) == (
        "68302",
        "169600",
    )


def test_passages_about_are_the_hits_titled_with_a_question_name() -> None:
    about = passages_about("What is the combined population of Kapel and Brubrupel?", [_DISTRACTOR])
    assert len(about) == 1 and about[0].startswith("1. [Kapel]") and "Quaithlor" not in about[0]
    assert passages_about("what is it?", [_DISTRACTOR]) == []  # the question names nothing
