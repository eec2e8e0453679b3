"""The PTE-vs-latency study (the paper's Table 10 on our hardware): how well each cost proxy tracks
pure generation latency, per turn and per trajectory.

Proxies: every PTE variant, naive token count (prompt + completion), API-pricing proxies with
input:output price ratios 1:1.5, 1:3 and 1:4, and output tokens alone. Latency is the engine's
``e2e_latency`` per call (``TurnTimings.e2e_s``); a trajectory's latency is the sum over its calls
(tool time excluded). A pure function over records: the runner (``study_runner``) only produces them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from interleaf.telemetry.hardware_profile import HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile
from interleaf.telemetry.pte import PTEVariant, TurnArrays, gamma, step_weight_pte, turn_pte
from interleaf.telemetry.records import Trajectory
from pydantic import BaseModel, Field
from scipy import stats

PRICE_RATIOS = (1.5, 3.0, 4.0)
"""Output:input price ratios of the pricing proxies (PAPERS.md §A validation)."""


class Correlation(BaseModel):
    """Correlation of one cost proxy with latency at one level."""

    proxy: str
    """Proxy name: a PTE variant, ``naive_tokens``, ``price_1:<k>`` or ``output_tokens``."""
    level: str
    """``turn`` (one point per LLM call) or ``trajectory`` (sums per trajectory)."""
    n: int
    """Number of points."""
    pearson_r: float | None
    """Pearson r (None when either series is constant)."""
    pearson_p: float | None
    """Two-sided p-value of ``pearson_r``."""
    spearman_rho: float | None
    """Spearman rank correlation."""
    spearman_p: float | None
    """Two-sided p-value of ``spearman_rho``."""


class StudyResult(BaseModel):
    """The study's numbers and the constants they rest on."""

    model: str
    """Model profile used for γ."""
    hardware: HardwareProfile
    """Hardware profile used (measured on this machine for the CPU study)."""
    gamma: float
    """γ for the model on the hardware."""
    step_weight: float
    """Weight-read cost of one decode step, prefill-token equivalents (``pte_plus``)."""
    trajectories: int
    """Trajectories analysed."""
    turns: int
    """LLM calls analysed."""
    mean_batch_size: float
    """Mean decode batch size over all calls."""
    correlations: list[Correlation] = Field(default_factory=list)
    """One entry per proxy and level."""

    def table(self) -> str:
        """A Markdown table (rows: proxies; columns: Pearson/Spearman per level)."""
        by = {(c.proxy, c.level): c for c in self.correlations}
        proxies = list(dict.fromkeys(c.proxy for c in self.correlations))

        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:+.3f}"

        lines = [
            f"model {self.model}, hardware {self.hardware.name} (HOI {self.hardware.hoi:.2f} FLOP/B), "
            f"γ={self.gamma:.4g}, weight-read/step={self.step_weight:.3g} PTE, {self.trajectories} trajectories, "
            f"{self.turns} calls, mean batch {self.mean_batch_size:.2f}",
            "",
            "| proxy | Pearson r (turn) | Spearman ρ (turn) | Pearson r (trajectory) | Spearman ρ (trajectory) |",
            "|---|---|---|---|---|",
        ]
        for p in proxies:
            t, j = by.get((p, "turn")), by.get((p, "trajectory"))
            lines.append(
                f"| {p} | {f(t and t.pearson_r)} | {f(t and t.spearman_rho)} | {f(j and j.pearson_r)} "
                f"| {f(j and j.spearman_rho)} |"
            )
        return "\n".join(lines) + "\n"


def _corr(proxy: str, level: str, x: np.ndarray, y: np.ndarray) -> Correlation:
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(
            proxy=proxy, level=level, n=n, pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    return Correlation(
        proxy=proxy,
        level=level,
        n=n,
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_p=float(sr.pvalue),
    )


def proxies_per_turn(turns: TurnArrays, model: ModelProfile, hw: HardwareProfile) -> dict[str, np.ndarray]:
    """Every cost proxy for every turn."""
    g, w = gamma(model, hw), step_weight_pte(model, hw)
    out = {v.value: turn_pte(turns, g, v, step_weight=w) for v in PTEVariant}
    prompt = turns.prompt_tokens.astype(np.float64)
    completion = turns.completion_tokens.astype(np.float64)
    out["naive_tokens"] = prompt + completion
    for k in PRICE_RATIOS:
        out[f"price_1:{k:g}"] = prompt + k * completion
    out["output_tokens"] = completion
    return out


def pte_latency_study(trajectories: Sequence[Trajectory], model: ModelProfile, hw: HardwareProfile) -> StudyResult:
    """Pearson and Spearman correlation of latency with each proxy, per turn and per trajectory."""
    turns = TurnArrays.from_trajectories(trajectories)
    latency = np.array([t.timings.e2e_s for tr in trajectories for t in tr.turns], dtype=np.float64)
    n_traj = len(trajectories)
    traj_latency = np.bincount(turns.trajectory, weights=latency, minlength=n_traj)
    corrs: list[Correlation] = []
    for name, values in proxies_per_turn(turns, model, hw).items():
        corrs.append(_corr(name, "turn", values, latency))
        corrs.append(
            _corr(name, "trajectory", np.bincount(turns.trajectory, weights=values, minlength=n_traj), traj_latency)
        )
    return StudyResult(
        model=model.name,
        hardware=hw,
        gamma=gamma(model, hw),
        step_weight=step_weight_pte(model, hw),
        trajectories=n_traj,
        turns=len(latency),
        mean_batch_size=float(turns.batch_size.mean()) if len(latency) else 0.0,
        correlations=corrs,
    )


__all__ = ["PRICE_RATIOS", "Correlation", "StudyResult", "proxies_per_turn", "pte_latency_study"]
