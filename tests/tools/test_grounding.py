"""Grounded numbers: tool arguments may hold only the conversation's numbers, each as often as it occurs."""

from __future__ import annotations

from interleaf.tools import (
    GrammarOptions,
    Tool,
    calculator,
    expressions_in,
    grounding,
    numbers_in,
    tool,
    tool_call_grammar,
)
from tests.grammar_check import can_end


def _calc(expression: str) -> str:
    return f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}</tool_call>'


def _grammar(tools: list[Tool], numbers: tuple[str, ...] | None, **options: object) -> str:
    opts = GrammarOptions(max_reasoning_chars=0, grounded_numbers=numbers, **options)  # type: ignore[arg-type]
    return tool_call_grammar([t.openai_schema() for t in tools], opts)


def test_numbers_in_reads_unsigned_integers_and_decimals_with_repeats() -> None:
    found = numbers_in(["Compute (18 * (55 - 18)) mod 7.", "3.25 and -4, v2"])
    assert found == ("18", "55", "18", "7", "3.25", "4", "2")
    assert numbers_in(["no numbers"]) == ()


def test_each_number_at_most_as_often_as_the_conversation_holds_it() -> None:
    ebnf = _grammar([calculator], numbers_in(["Compute (18 * (55 - 80)). Here ^ is a power."]))
    for good in ["(18 * (55 - 80))", "18*55-80", "80 mod 18", "(55)^18"]:
        assert can_end(ebnf, _calc(good)), good
    for bad in [
        "((18 * (55 - 80)) * (18 * (55 - 80)))",  # a repeated sub-expression
        "(18 * (55 - 80)) mod 7",  # an invented number
        "1855",  # two numbers run together make a third
        "18.55",
        "(18 * (55 - 80)) - 1",
    ]:
        assert not can_end(ebnf, _calc(bad)), bad


def test_once_every_number_is_used_only_brackets_may_close() -> None:
    ebnf = _grammar([calculator], ("18", "55", "80"))
    assert can_end(ebnf, _calc("((18 * (55 - 80"))  # the calculator closes what is left open
    assert can_end(ebnf, _calc("((18 * (55 - 80)))"))
    for bad in ["((18 * (55 - 80)) * (", "((18 * (55 - 80)) mod ", "18 * 55 - 80 "]:
        assert not can_end(ebnf, _calc(bad)), bad


def test_a_number_written_twice_may_be_used_twice() -> None:
    ebnf = _grammar([calculator], ("60", "33", "60"))
    assert can_end(ebnf, _calc("(33 mod 60) * 60"))
    assert not can_end(ebnf, _calc("(33 mod 60) * 60 + 60"))


def test_tool_outputs_add_numbers_and_too_many_are_grounded_without_counting() -> None:
    many = tuple(str(100 + i) for i in range(12))  # 2^12 combinations > MAX_STATES
    assert 2 ** len(many) > grounding.MAX_STATES
    ebnf = _grammar([calculator], many)
    assert can_end(ebnf, _calc("100 + 100 - 111"))  # uncounted: repeats allowed
    assert not can_end(ebnf, _calc("100 + 99"))  # still grounded


def test_without_constrain_arguments_or_numbers_nothing_is_grounded() -> None:
    numbers = ("18", "55")
    assert can_end(_grammar([calculator], numbers, constrain_arguments=False), _calc("7 * 7 * 7"))
    assert can_end(_grammar([calculator], None), _calc("7 * 7 * 7"))


def test_integer_and_number_arguments_take_a_grounded_value_within_their_range() -> None:
    @tool
    def pick(row: int, weight: float) -> str:
        """Pick.

        Args:
            row: which row.
            weight: how much.
        """
        return "ok"

    ebnf = _grammar([pick], ("3", "2.5"))

    def call(row: str, weight: str) -> str:
        return f'<tool_call>{{"name": "pick", "arguments": {{"row": {row}, "weight": {weight}}}}}</tool_call>'

    assert can_end(ebnf, call("3", "2.5"))
    assert can_end(ebnf, call("-3", "3"))
    assert not can_end(ebnf, call("4", "2.5"))
    assert not can_end(ebnf, call("2.5", "2.5"))  # not an integer


def test_patterns_of_other_shapes_are_kept_as_they_are() -> None:
    assert grounding.ground_pattern_ebnf(r"^[0-9]{4}-[0-9]{2}$", ("2024",), "p") is None
    assert grounding.ground_pattern_ebnf(r"^[a-z]+$", ("1",), "p") is None  # no digits to ground
    rules = grounding.ground_pattern_ebnf(r"^(?:[0-9.+\-*/%^() ]|mod)+$", ("1",), "p")
    assert rules is not None and next(iter(rules)) == "p"


def test_expressions_in_finds_arithmetic_written_out_and_nothing_else() -> None:
    question = "Compute ((31 mod 34) * (17 + (75 * 27))). Here ^ is exponentiation and mod is the remainder."
    assert expressions_in([question]) == ("((31 mod 34) * (17 + (75 * 27)))",)
    assert expressions_in(["Compute 4 mod 48.", "Compute (57)^2.", "(see 3.5 * 2).", "(3 + 4 gives 7"]) == (
        "4 mod 48",
        "(57)^2",
        "3.5 * 2",
        "3 + 4",
    )
    for words in [
        "What is the combined population of Velka and Dramin?",
        "x^2 + 3",  # glued to a variable: algebra, not arithmetic to copy
        "2x + 3 = 7",
        "1. Velka 2. Dramin",  # list numbers, no operator
        "3 + 4) * (5",  # brackets unbalanced inside
        "Here ^ is exponentiation and mod is the remainder.",
    ]:
        assert expressions_in([words]) == (), words


def _grounded(question: str, *outputs: str) -> str:
    return _grammar([calculator], numbers_in([question, *outputs]), grounded_expressions=expressions_in([question]))


def test_the_question_s_arithmetic_is_copied_whole_or_not_at_all() -> None:
    ebnf = _grounded("Compute 4 mod 48. Here ^ is exponentiation and mod is the remainder.")
    for good in ["4 mod 48", "(4 mod 48)", "((4 mod 48"]:
        assert can_end(ebnf, _calc(good)), good
    for bad in ["4 * (48)", "4 * 48", "48 mod 4", "4 mod 4", "(4) mod (48)", "4 mod 48 mod 48", "4"]:
        assert not can_end(ebnf, _calc(bad)), bad


def test_a_nested_expression_keeps_its_operators_and_brackets() -> None:
    question = "Compute ((31 mod 34) * (17 + (75 * 27))). Here ^ is exponentiation and mod is the remainder."
    ebnf = _grounded(question)
    assert can_end(ebnf, _calc("((31 mod 34) * (17 + (75 * 27)))"))
    for bad in ["((31 mod 34) * (17 + (75 * 27))", "((31 * 34) * (17 + (75 * 27)))", "(31 mod 34) * (17 + 75 * 27)"]:
        assert not can_end(ebnf, _calc(bad)), bad


def test_numbers_outside_the_arithmetic_and_tool_outputs_stay_free() -> None:
    ebnf = _grounded("Compute 3 * 4, then subtract 5.", "12")
    for good in ["3 * 4 - 5", "(3 * 4) - 5", "12 - 5", "5 + (3 * 4)"]:
        assert can_end(ebnf, _calc(good)), good
    for bad in ["3 * 4 - 3", "4 - 5", "3 - 5"]:
        assert not can_end(ebnf, _calc(bad)), bad
    # A question in words has no arithmetic: its numbers take any operator (the mixed suite's case).
    words = _grounded("What is the combined population?", "Velka: population 1650", "Dramin: population 1706")
    assert can_end(words, _calc("1650 + 1706"))
    assert can_end(words, _calc("1706 - 1650"))
