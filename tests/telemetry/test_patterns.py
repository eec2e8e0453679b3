"""Pattern detectors: a positive and a negative fixture each, evidence checked, job statistics."""

from __future__ import annotations

import pytest

from interleaf.telemetry import Pattern, PatternConfig, detect_patterns, pattern_stats
from tests.telemetry import telemetry_fixtures as fx


def found(traj, pattern: Pattern, **kw):
    return [f for f in detect_patterns(traj, **kw) if f.pattern == pattern]


def test_confirmatory_positive_with_span() -> None:
    t = fx.confirmatory()
    (f,) = found(t, Pattern.CONFIRMATORY_TOOL_USAGE)
    assert f.turns == [0]
    span = f.spans[0]
    assert t.turns[0].text[span.start : span.end] == "51" and span.source == "text"
    assert f.spans[1].source == "tool_raw" and f.spans[1].call_id == "call_0_0"


def test_confirmatory_negative_number_boundaries() -> None:
    assert found(fx.not_confirmatory(), Pattern.CONFIRMATORY_TOOL_USAGE) == []


def test_tool_mixing() -> None:
    (f,) = found(fx.mixing(), Pattern.TOOL_MIXING)
    assert f.turns == [0, 1] and f.figures["distinct_tool_types"] == 2
    assert "retrieval (search" in f.detail and "computation (python" in f.detail
    assert found(fx.confirmatory(), Pattern.TOOL_MIXING) == []


def test_lack_of_tool_priors_empty_print_and_syntax_error() -> None:
    fs = found(fx.silent_python(), Pattern.LACK_OF_TOOL_PRIORS)
    assert [f.turns for f in fs] == [[0], [1]]
    assert "empty output" in fs[0].detail and "did not compile (SyntaxError)" in fs[1].detail
    assert fs[1].spans[0].call_id == "call_1_0" and "SyntaxError" in fs[1].spans[0].excerpt


def test_lack_of_tool_priors_negative() -> None:
    # Output mentioning "Error rate" is not an execution error.
    assert found(fx.healthy_python(), Pattern.LACK_OF_TOOL_PRIORS) == []
    assert found(fx.confirmatory(), Pattern.LACK_OF_TOOL_PRIORS) == []


def test_tool_format_collapse_malformed_and_schema() -> None:
    fs = found(fx.malformed_call(), Pattern.TOOL_FORMAT_COLLAPSE)
    details = [f.detail for f in fs]
    assert any("unparseable" in d for d in details)
    assert any("did not parse" in d for d in details)
    assert any("schema violation" in d and "call_1_0" in d for d in details)
    assert {t for f in fs for t in f.turns} == {0, 1}
    # A malformed call is not a "lack of tool priors": it never executed.
    assert found(fx.malformed_call(), Pattern.LACK_OF_TOOL_PRIORS) == []


def test_tool_format_collapse_negative_and_unknown_tool() -> None:
    assert found(fx.mixing(), Pattern.TOOL_FORMAT_COLLAPSE) == []
    t = fx.mixing()
    t.tools = ["python"]
    (f,) = found(t, Pattern.TOOL_FORMAT_COLLAPSE)
    assert "'search' is not among the offered tools" in f.detail


def test_long_tool_response_prices_decode() -> None:
    (f,) = found(fx.long_response(), Pattern.LONG_TOOL_RESPONSE, gamma=0.01)
    # final context: prompts 100, 100+20+1200=1320, 1320+30+10=1360; +10 completion = 1370
    assert f.figures["tool_tokens"] == 1200
    assert f.figures["share"] == pytest.approx(1200 / 1370)
    assert f.figures["decode_pte"] == pytest.approx(0.01 * 1200 * (30 + 10))
    assert f.figures["extra_pte_evict_all"] == pytest.approx(1200 * 2 + 480)
    assert f.turns == [0, 1, 2]
    assert found(fx.mixing(), Pattern.LONG_TOOL_RESPONSE) == []


def test_recompute_after_pause() -> None:
    (f,) = found(fx.recompute(), Pattern.RECOMPUTE_AFTER_PAUSE)
    assert f.figures["recomputed_tokens"] == 69 and f.turns == [0, 1]
    assert "release" in f.detail and "3.00 s" in f.detail
    # Held KV: cached = 110 = prompt - new - 1 (the last sampled token of turn 0 never ran): no recompute.
    assert found(fx.held(), Pattern.RECOMPUTE_AFTER_PAUSE) == []
    t = fx.held()
    t.turns[1].cache.cached_tokens = 109
    assert found(t, Pattern.RECOMPUTE_AFTER_PAUSE) == []


def test_redundant_identical_calls_ignores_key_order() -> None:
    (f,) = found(fx.redundant(), Pattern.REDUNDANT_TOOL_CALL)
    assert f.turns == [0, 1] and [s.call_id for s in f.spans] == ["call_0_0", "call_1_0"]
    assert found(fx.mixing(), Pattern.REDUNDANT_TOOL_CALL) == []


def test_pattern_stats_frequency_and_multiplier() -> None:
    trajs = [fx.confirmatory(), fx.not_confirmatory(), fx.held(), fx.silent_python()]
    findings = [detect_patterns(t) for t in trajs]
    stats = {s.pattern: s for s in pattern_stats(findings, [300.0, 100.0, 100.0, 200.0])}
    c = stats[Pattern.CONFIRMATORY_TOOL_USAGE]
    assert (c.with_pattern, c.frequency) == (1, 0.25)
    # PAPERS.md §B read literally, the default: ÷ the pattern-free ones (silent_python has lack of priors).
    assert c.cost_multiplier == pytest.approx(300 / ((100 + 100) / 2)) and c.baseline == "pattern_free"
    # The named alternative: ÷ every trajectory without *this* pattern, other patterns or not.
    other = {s.pattern: s for s in pattern_stats(findings, [300.0, 100.0, 100.0, 200.0], baseline="without_pattern")}
    assert other[Pattern.CONFIRMATORY_TOOL_USAGE].cost_multiplier == pytest.approx(300 / ((100 + 100 + 200) / 3))
    assert other[Pattern.CONFIRMATORY_TOOL_USAGE].baseline == "without_pattern"
    assert stats[Pattern.TOOL_MIXING].cost_multiplier is None
    with pytest.raises(ValueError, match="baseline='x'"):
        pattern_stats(findings, [1, 2, 3, 4], baseline="x")


# --- The paper's rules (PAPERS.md §B) on its own tool names and output format, positive and negative. ---


def paper_call(i: int, name: str, args: dict, result: str) -> fx.ToolCallRecord:
    return fx.call(i, 0, name, args, result)


def test_retrieval_workflow_is_not_mixing_but_retrieval_plus_python_is() -> None:
    """SimpleQA's search + visit is one tool type; WebInstruct's search + visit + python is two."""
    search = paper_call(0, "google_search_tool", {"query": ["capital of France"]}, "Paris ...")
    visit = paper_call(1, "visit_tool", {"url": "https://x", "goal": "capital"}, "Paris is the capital")
    python = paper_call(2, "python_tool", {"code": "print(len('Paris'))"}, "stdout:\n5\n\nstderr:\n")
    tools = ["google_search_tool", "visit_tool", "python_tool"]
    simpleqa = fx.traj(
        "sq",
        [fx.turn(0, "s", [search]), fx.turn(1, "v", [visit]), fx.turn(2, "<ANSWER>Paris</ANSWER>")],
        answer="Paris",
        tools=tools,
    )
    assert found(simpleqa, Pattern.TOOL_MIXING) == []
    web = fx.traj(
        "wi",
        [
            fx.turn(0, "s", [search]),
            fx.turn(1, "v", [visit]),
            fx.turn(2, "p", [python]),
            fx.turn(3, "<ANSWER>5</ANSWER>"),
        ],
        answer="5",
        tools=tools,
    )
    (f,) = found(web, Pattern.TOOL_MIXING)
    assert f.turns == [0, 2] and f.figures["distinct_tool_types"] == 2


def test_mixing_ignores_unoffered_tools_and_the_answer_tool_and_is_extendable() -> None:
    from interleaf.telemetry import PatternConfig

    t = fx.mixing()
    t.tools = ["python"]  # the search call named a tool that was not offered: format collapse, not mixing
    assert found(t, Pattern.TOOL_MIXING) == []
    assert found(t, Pattern.TOOL_FORMAT_COLLAPSE)
    answered = fx.traj(
        "ans",
        [
            fx.turn(0, "p", [fx.call(0, 0, "python", {"code": "print(5)"}, "5\n")]),
            fx.turn(1, "a", [fx.call(1, 0, "answer", {"answer": "5"}, "5")]),
        ],
        answer="5",
        tools=["python", "answer"],
    )
    assert found(answered, Pattern.TOOL_MIXING) == []
    # A user's own tools: typed by name fragments, or declared in PatternConfig.tool_types.
    custom = fx.traj(
        "c",
        [
            fx.turn(0, "x", [fx.call(0, 0, "kb_lookup", {"q": "a"}, "r")]),
            fx.turn(1, "y", [fx.call(1, 0, "wiki_search", {"q": "b"}, "r")]),
        ],
        tools=["kb_lookup", "wiki_search"],
    )
    assert len(found(custom, Pattern.TOOL_MIXING)) == 1  # kb_lookup is a type of its own by default
    cfg = PatternConfig(tool_types={"kb_lookup": "retrieval"})
    assert found(custom, Pattern.TOOL_MIXING, config=cfg) == []


def confirm_case(text: str, answer: str, output: str) -> fx.Trajectory:
    code = {"code": "print(1 + 1)"}
    return fx.traj(
        "c",
        [
            fx.turn(0, text + " " + fx.TC, [fx.call(0, 0, "python", code, output)]),
            fx.turn(1, f"<answer>{answer}</answer>"),
        ],
        answer=answer,
        tools=["python"],
    )


def test_confirmatory_needs_the_answer_as_a_stated_value_before_the_call() -> None:
    # "Step 2" labels a step; it does not state the answer 2.
    assert (
        found(confirm_case("Step 2: add the numbers.", "2", "stdout:\n2\n\nstderr:\n"), Pattern.CONFIRMATORY_TOOL_USAGE)
        == []
    )
    assert found(confirm_case("1. add\n2. check", "2", "2\n"), Pattern.CONFIRMATORY_TOOL_USAGE) == []
    # Stated as a value, and the tool prints it: confirmatory (the paper's 81% case).
    (f,) = found(
        confirm_case("1 + 1 = 2, so the answer is 2.", "2", "stdout:\n2\n\nstderr:\n"), Pattern.CONFIRMATORY_TOOL_USAGE
    )
    assert [s.source for s in f.spans] == ["text", "tool_raw", "tool_result"]
    # Stated before the call: confirmatory whatever the call printed (App. E asks no more); the stricter
    # [ours] reading also wants the output to contain the answer.
    disagrees = confirm_case("Maybe it is 2.", "2", "stdout:\n3\n\nstderr:\n")
    assert found(disagrees, Pattern.CONFIRMATORY_TOOL_USAGE)
    strict = PatternConfig(confirmatory_needs_output=True)
    assert found(disagrees, Pattern.CONFIRMATORY_TOOL_USAGE, config=strict) == []
    # Numeric equality, whole numbers only; \\boxed{} and "x = 3" answers are normalised.
    assert found(confirm_case("It is 2.0 I think.", "\\boxed{2}", "2\n"), Pattern.CONFIRMATORY_TOOL_USAGE)
    assert found(confirm_case("x = 3 surely", "x = 3", "3\n"), Pattern.CONFIRMATORY_TOOL_USAGE)
    assert found(confirm_case("Is it 23 or 2.5?", "2", "2\n"), Pattern.CONFIRMATORY_TOOL_USAGE) == []
    # Word answers match whole words, case-insensitively.
    assert found(confirm_case("I believe paris.", "Paris", "Paris\n"), Pattern.CONFIRMATORY_TOOL_USAGE)
    assert found(confirm_case("Parisian food.", "Paris", "Paris\n"), Pattern.CONFIRMATORY_TOOL_USAGE) == []


def test_confirmatory_is_the_answer_stated_before_python_is_invoked_whatever_it_prints() -> None:
    """PAPERS.md §B.1 as written: "The answer is 42. Let me verify." then ``print(6*7 == 42)`` (stdout
    True) is confirmatory; so is the call that prints 42. A call that never ran (malformed) is not."""
    verify_by_equality = fx.traj(
        "eq",
        [
            fx.turn(0, "The answer is 42. Let me verify. " + fx.TC,
                    [fx.call(0, 0, "python_tool", {"code": "print(6*7==42)"}, "stdout:\nTrue\n\nstderr:\n")]),
            fx.turn(1, "<ANSWER>42</ANSWER>"),
        ],
        answer="42",
        tools=["python_tool"],
    )  # fmt: skip
    prints_it = verify_by_equality.model_copy(deep=True)
    prints_it.turns[0].tool_calls[0].result = "stdout:\n42\n\nstderr:\n"
    for t in (verify_by_equality, prints_it):
        (f,) = found(t, Pattern.CONFIRMATORY_TOOL_USAGE)
        assert f.turns == [0] and f.spans[0].excerpt == "42" and "whose output" not in f.detail
    strict = PatternConfig(confirmatory_needs_output=True)
    assert found(verify_by_equality, Pattern.CONFIRMATORY_TOOL_USAGE, config=strict) == []
    assert "whose output confirms it" in found(prints_it, Pattern.CONFIRMATORY_TOOL_USAGE, config=strict)[0].detail
    never_ran = verify_by_equality.model_copy(deep=True)
    never_ran.turns[0].tool_calls[0].arguments = None
    assert found(never_ran, Pattern.CONFIRMATORY_TOOL_USAGE) == []


def priors_case(result: str) -> fx.Trajectory:
    return fx.traj(
        "p",
        [fx.turn(0, "x", [fx.call(0, 0, "python_tool", {"code": "..."}, result)]), fx.turn(1, "<answer>0.5</answer>")],
        answer="0.5",
        tools=["python_tool"],
    )


@pytest.mark.parametrize(
    ("result", "lacks"),
    [
        ("stdout:\n\nstderr:\n", True),  # missing print (SandboxFusion's empty format)
        ("", True),
        ("stdout:\n\nstderr:\n/x.py:1: DeprecationWarning: old\n", True),  # nothing printed; warnings aside
        ("stdout:\n\nstderr:\n  File \"/x.py\", line 1\n    print(1\nSyntaxError: '(' was never closed\n", True),
        ('stdout:\n\nstderr:\n  File "/x.py", line 2\nIndentationError: unexpected indent\n', True),
        ("stdout:\n0.5\n\nstderr:\n/x.py:3: DeprecationWarning: use y\n  warnings.warn()\n", False),
        (
            'stdout:\n\nstderr:\nTraceback (most recent call last):\n  File "/x.py", line 1\n'
            "ZeroDivisionError: division by zero\n",
            False,
        ),  # a runtime exception of code that compiled
        ("stdout:\nError rate: 0\n\nstderr:\n", False),
    ],
)
def test_lack_of_priors_is_missing_print_or_bad_syntax_only(result: str, lacks: bool) -> None:
    assert bool(found(priors_case(result), Pattern.LACK_OF_TOOL_PRIORS)) is lacks


def test_format_collapse_is_not_applicable_under_constrained_decoding() -> None:
    from interleaf.telemetry import not_applicable, summarize_job
    from interleaf.telemetry.patterns import CONSTRAINED_DECODING

    constrained = [fx.confirmatory(), fx.mixing()]
    for t in constrained:
        t.tool_calls_constrained = True
    assert not_applicable(constrained[0]) == {Pattern.TOOL_FORMAT_COLLAPSE: CONSTRAINED_DECODING}
    stats = summarize_job(constrained).pattern(Pattern.TOOL_FORMAT_COLLAPSE.value)
    assert stats is not None
    assert (stats.frequency, stats.applicable, stats.not_applicable) == (None, 0, "n/a (constrained decoding)")
    assert "tool_format_collapse n/a (constrained decoding)" in dict(summarize_job(constrained).rows())["patterns"]
    # Mixed jobs: the rule's frequency counts only the unconstrained trajectories.
    mixed = [*constrained, fx.malformed_call()]
    s = summarize_job(mixed).pattern(Pattern.TOOL_FORMAT_COLLAPSE.value)
    assert s is not None and (s.with_pattern, s.applicable, s.frequency, s.not_applicable) == (1, 1, 1.0, None)


def test_cost_multiplier_is_computed_within_model_and_suite() -> None:
    """Pooling settings would compare a cheap suite's trajectories with an expensive one's."""
    trajs = [fx.confirmatory(), fx.not_confirmatory(), fx.confirmatory(), fx.not_confirmatory()]
    findings = [detect_patterns(t) for t in trajs]
    settings = [("m", "arith"), ("m", "arith"), ("m", "mixed"), ("m", "mixed")]
    stats = {s.pattern: s for s in pattern_stats(findings, [20.0, 10.0, 3000.0, 1000.0], settings=settings)}
    c = stats[Pattern.CONFIRMATORY_TOOL_USAGE]
    assert [g.cost_multiplier for g in c.groups] == [pytest.approx(2.0), pytest.approx(3.0)]
    assert c.cost_multiplier == pytest.approx(2.5)  # weighted by trajectories with the pattern: 1 each
    pooled = {s.pattern: s for s in pattern_stats(findings, [20.0, 10.0, 3000.0, 1000.0])}
    assert pooled[Pattern.CONFIRMATORY_TOOL_USAGE].cost_multiplier == pytest.approx(1510 / 505)
    # A setting with only one side contributes nothing.
    one_sided = pattern_stats(
        findings, [20.0, 10.0, 3000.0, 1000.0], settings=[("m", "a"), ("m", "b"), ("m", "b"), ("m", "c")]
    )
    c1 = {s.pattern: s for s in one_sided}[Pattern.CONFIRMATORY_TOOL_USAGE]
    assert c1.cost_multiplier == pytest.approx(3000 / 10) and len(c1.groups) == 3
