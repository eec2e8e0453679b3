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
from interleaf.telemetry.records import CacheFigures, Trajectory, Turn
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


def one_call(model: str, prompt: int, completion: int) -> Trajectory:
    """A one-call trajectory with engine figures: ``prompt`` context tokens, ``completion`` decoded."""
    cache = CacheFigures(prompt_tokens=prompt, cached_tokens=0, completion_tokens=completion)
    return Trajectory(
        id=f"{model}-{prompt}-{completion}",
        model=model,
        turns=[Turn(index=0, delta_ids=[1] * prompt, completion_ids=[2] * completion, cache=cache)],
    )


def test_ranking_stability_across_hardware() -> None:
    """γ scales with each profile's HOI (α = 1 on H100, 0.18 on V100), so a decode-heavy model can
    outrank a prefill-heavy one on H100 and not on V100: ρ must show it."""
    heavy_prefill, decode_heavy, top = "Qwen2.5-7B-Instruct", "Llama-3.1-8B-Instruct", "Qwen3-32B"
    # evict_all PTE = context + γ·context·decoded. The decode-heavy one: 8,000 + γ·8,000·500 with
    # γ_H100 = 0.0062 → 32,800, ×α elsewhere: 19,400 (H200), 18,600 (A100, RTX-4090), 12,600 (V100).
    workloads = {heavy_prefill: (15_000, 0), decode_heavy: (8_000, 500), top: (40_000, 0)}
    by_model = {name: (MODEL_PROFILES[name], [one_call(name, *w)]) for name, w in workloads.items()}
    r = ranking_stability(by_model, list(HARDWARE_PROFILES.values()))
    assert r.models == sorted(workloads) and len(r.spearman) == 10  # 5 profiles, pairwise
    assert r.mean_pte["H100-PCIe"][decode_heavy] > r.mean_pte["H100-PCIe"][heavy_prefill]
    assert r.mean_pte["V100"][decode_heavy] < r.mean_pte["V100"][heavy_prefill]
    # Ranks swap for 2 of 3 models between V100 and every other profile: ρ = 1 − 6·2/(3·8) = 0.5.
    assert r.spearman["H100-PCIe vs V100"] == pytest.approx(0.5)
    assert r.spearman["H100-PCIe vs H200"] == pytest.approx(1.0)
    assert r.min_rho == pytest.approx(0.5) and "min Spearman ρ 0.500" in r.text()
    # Without decode work the ranking is the prefill ranking everywhere.
    flat = {name: (MODEL_PROFILES[name], [one_call(name, p, 0)]) for name, (p, _) in workloads.items()}
    assert ranking_stability(flat, list(HARDWARE_PROFILES.values())).spearman["H100-PCIe vs V100"] == 1.0
    assert ranking_stability(flat, list(HARDWARE_PROFILES.values())).min_rho == pytest.approx(1.0)
    # Two models: a rank correlation of two items says nothing.
    two = ranking_stability(dict(list(by_model.items())[:2]), list(HARDWARE_PROFILES.values()))
    assert two.min_rho is None and "needs 3 or more" in two.text()


def test_report_prints_ranking_line() -> None:
    trajs = [fx.confirmatory(), fx.long_response()]
    text = render_report(build_report(trajs), "md", ranking=hardware_ranking(trajs))
    assert "Model ranking by mean PTE across hardware profiles: n/a (1 model(s)" in text
    # Three profiled models: a figure, computed from the trajectories' own model names.
    many = [
        one_call("Qwen2.5-7B-Instruct", 15_000, 0),
        one_call("Llama-3.1-8B-Instruct", 8_000, 500),
        one_call("Qwen3-32B", 40_000, 0),
    ]
    text = render_report(build_report(many), "md", ranking=hardware_ranking(many))
    assert "Model ranking by mean PTE across hardware profiles: min Spearman ρ 0.500 over 5 hardware" in text
