"""The paper's claims beyond latency: incorrect trajectories cost more; model rankings by PTE are
stable across hardware."""

from __future__ import annotations

import pytest

from interleaf.telemetry import (
    HARDWARE_PROFILES,
    MODEL_PROFILES,
    build_report,
    correctness_cost,
    hardware_ranking,
    ranking_stability,
    render_report,
    summarize_job,
)
from tests.telemetry import telemetry_fixtures as fx


def test_correctness_cost_compares_means_with_a_rank_test() -> None:
    trajs = [fx.confirmatory() for _ in range(8)]
    for k, t in enumerate(trajs):
        t.correct = k < 4
    values = [10, 11, 12, 13, 100, 110, 120, 130]
    c = correctness_cost(trajs, values)
    assert (c.correct, c.incorrect) == (4, 4)
    assert c.mean_pte_correct == pytest.approx(11.5) and c.mean_pte_incorrect == pytest.approx(115)
    assert c.ratio == pytest.approx(10.0)
    assert c.p_value is not None and c.p_value < 0.05  # complete separation of 4 vs 4: p = 0.029
    # Equal distributions: no evidence either way.
    same = correctness_cost(trajs, [10, 20, 30, 40, 10, 20, 30, 40])
    assert same.p_value is not None and same.p_value > 0.5
    # Unscored and unpriced trajectories are left out; too few on one side → no p-value.
    trajs[0].correct = None
    few = correctness_cost(trajs[:3] + trajs[4:5], [1.0, float("nan"), 3.0, 4.0])
    assert (few.correct, few.incorrect, few.p_value) == (1, 1, None)


def test_summary_reports_pte_of_correct_vs_incorrect() -> None:
    good, bad = fx.confirmatory(), fx.long_response()
    bad.correct, bad.score = False, 0.0
    s = summarize_job([good, bad])
    assert s.pte_by_correctness is not None
    assert (s.pte_by_correctness.correct, s.pte_by_correctness.incorrect) == (1, 1)
    assert "incorrect (n=1) vs" in dict(s.rows())["PTE incorrect vs correct"]


def test_ranking_stability_across_hardware() -> None:
    names = ["Qwen2.5-7B-Instruct", "Llama-3.1-8B-Instruct", "Qwen3-32B", "Llama-3.1-70B-Instruct"]
    by_model = {}
    for k, name in enumerate(names):
        t = fx.long_response()
        t.model = name
        for turn in t.turns:  # different decode loads per model
            turn.completion_ids = [8] * (10 + 40 * k)
        by_model[name] = (MODEL_PROFILES[name], [t])
    r = ranking_stability(by_model, list(HARDWARE_PROFILES.values()))
    assert r.models == sorted(names) and len(r.spearman) == 10  # 5 profiles, pairwise
    assert r.min_rho is not None and -1.0 <= r.min_rho <= 1.0
    assert "min Spearman ρ" in r.text()
    # Two models: a rank correlation of two items says nothing.
    two = ranking_stability(dict(list(by_model.items())[:2]), list(HARDWARE_PROFILES.values()))
    assert two.min_rho is None and "needs 3 or more" in two.text()


def test_report_prints_ranking_line() -> None:
    trajs = [fx.confirmatory(), fx.long_response()]
    text = render_report(build_report(trajs), "md", ranking=hardware_ranking(trajs))
    assert "Model ranking by mean PTE across hardware profiles: n/a (1 model(s)" in text
