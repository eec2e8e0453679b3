"""Pattern detectors: a positive and a negative fixture each, evidence checked, job statistics."""

from __future__ import annotations

import pytest

from interleaf.telemetry import Pattern, detect_patterns, pattern_stats
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
    assert f.turns == [0, 1] and f.figures["distinct_tools"] == 2
    assert found(fx.confirmatory(), Pattern.TOOL_MIXING) == []


def test_lack_of_tool_priors_empty_print_and_syntax_error() -> None:
    fs = found(fx.silent_python(), Pattern.LACK_OF_TOOL_PRIORS)
    assert [f.turns for f in fs] == [[0], [1]]
    assert "empty output" in fs[0].detail and "execution error" in fs[1].detail
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
    assert c.cost_multiplier == pytest.approx(300 / ((100 + 100 + 200) / 3))
    free = {s.pattern: s for s in pattern_stats(findings, [300.0, 100.0, 100.0, 200.0], baseline="pattern_free")}
    assert free[Pattern.CONFIRMATORY_TOOL_USAGE].cost_multiplier == pytest.approx(3.0)
    assert stats[Pattern.TOOL_MIXING].cost_multiplier is None
    with pytest.raises(ValueError, match="baseline='x'"):
        pattern_stats(findings, [1, 2, 3, 4], baseline="x")
