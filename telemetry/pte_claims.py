"""The PTE paper's two claims beyond latency, checked on recorded runs (PAPERS.md §A, "Validation"):
incorrect trajectories have higher PTE, and model rankings by PTE are stable across hardware
(Spearman ρ 0.956–0.995 in the paper)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel
from scipy import stats

from interleaf.telemetry.hardware_profile import HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile
from interleaf.telemetry.pte import PTEVariant, TurnArrays, gamma, turn_pte
from interleaf.telemetry.records import Trajectory


class CorrectnessCost(BaseModel):
    """Mean PTE of correct vs incorrect trajectories, with a two-sided Mann–Whitney U test (no
    normality assumed: PTE is heavy-tailed)."""

    correct: int
    """Scored-correct trajectories with a PTE."""
    incorrect: int
    """Scored-incorrect trajectories with a PTE."""
    mean_pte_correct: float | None
    """Their mean PTE (None when there is none)."""
    mean_pte_incorrect: float | None
    """Mean PTE of the incorrect ones."""
    ratio: float | None
    """``mean_pte_incorrect / mean_pte_correct``."""
    p_value: float | None
    """Mann–Whitney U two-sided p-value; None with fewer than 2 on either side."""

    def text(self) -> str:
        """One line for the summary table."""
        if self.mean_pte_correct is None or self.mean_pte_incorrect is None:
            return f"n/a ({self.correct} correct, {self.incorrect} incorrect)"
        p = "n/a" if self.p_value is None else f"{self.p_value:.2g}"
        return (
            f"{self.mean_pte_incorrect:,.0f} incorrect (n={self.incorrect}) vs {self.mean_pte_correct:,.0f} correct "
            f"(n={self.correct}), x{self.ratio:.2f}, Mann-Whitney p={p}"
        )


def correctness_cost(trajectories: Sequence[Trajectory], pte_values: Sequence[float] | np.ndarray) -> CorrectnessCost:
    """Compare the PTE of correct and incorrect trajectories (unscored and unpriced ones left out)."""
    values = np.asarray(pte_values, dtype=np.float64)
    verdict = np.array([t.correct is True for t in trajectories], dtype=bool)
    scored = np.array([t.correct is not None for t in trajectories], dtype=bool) & ~np.isnan(values)
    good, bad = values[scored & verdict], values[scored & ~verdict]
    p = None
    if good.size >= 2 and bad.size >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.mannwhitneyu(bad, good, alternative="two-sided").pvalue)
    mean_good = float(good.mean()) if good.size else None
    mean_bad = float(bad.mean()) if bad.size else None
    return CorrectnessCost(
        correct=int(good.size),
        incorrect=int(bad.size),
        mean_pte_correct=mean_good,
        mean_pte_incorrect=mean_bad,
        ratio=mean_bad / mean_good if mean_good and mean_bad is not None else None,
        p_value=p,
    )


class RankingStability(BaseModel):
    """Do models rank the same by mean PTE on every hardware profile?"""

    models: list[str]
    """Models compared."""
    hardware: list[str]
    """Hardware profiles compared."""
    mean_pte: dict[str, dict[str, float]]
    """hardware → model → mean ``evict_all`` PTE per trajectory."""
    spearman: dict[str, float | None]
    """``"<hw a> vs <hw b>"`` → Spearman ρ of the two rankings (None when a ranking is constant)."""
    min_rho: float | None
    """The smallest ρ (None with fewer than 3 models: ρ of two items is ±1 and says nothing)."""

    def text(self) -> str:
        """One line for reports."""
        if self.min_rho is None:
            return f"n/a ({len(self.models)} model(s); needs 3 or more)"
        return (
            f"min Spearman ρ {self.min_rho:.3f} over {len(self.hardware)} hardware profiles, {len(self.models)} models"
        )


def ranking_stability(
    by_model: Mapping[str, tuple[ModelProfile, Sequence[Trajectory]]], hardware: Sequence[HardwareProfile]
) -> RankingStability:
    """Rank models by mean ``evict_all`` PTE on each hardware profile and correlate the rankings
    pairwise. ``by_model``: model name → (its profile, its trajectories)."""
    models = sorted(by_model)
    means: dict[str, dict[str, float]] = {}
    for hw in hardware:
        means[hw.name] = {}
        for name in models:
            profile, trajs = by_model[name]
            turns = TurnArrays.from_trajectories(trajs)
            per_turn = turn_pte(turns, gamma(profile, hw), PTEVariant.EVICT_ALL)
            means[hw.name][name] = float(per_turn.sum() / max(len(trajs), 1))
    rhos: dict[str, float | None] = {}
    for a, b in itertools.combinations([hw.name for hw in hardware], 2):
        x = [means[a][m] for m in models]
        y = [means[b][m] for m in models]
        rho = None
        if len(models) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho = float(stats.spearmanr(x, y).statistic)
        rhos[f"{a} vs {b}"] = rho
    known = [r for r in rhos.values() if r is not None]
    return RankingStability(
        models=models,
        hardware=[hw.name for hw in hardware],
        mean_pte=means,
        spearman=rhos,
        min_rho=min(known) if known and len(models) >= 3 else None,
    )


__all__ = ["CorrectnessCost", "RankingStability", "correctness_cost", "ranking_stability"]
