"""The PTE-vs-latency study (the paper's Table 10 on our hardware): how well each cost proxy tracks
pure generation latency, per turn and per trajectory.

Proxies: every PTE variant, naive token count (prompt + completion), API-pricing proxies with
input:output price ratios 1:1.5, 1:3 and 1:4, and output tokens alone. Latency is the engine's
``e2e_latency`` per call (``TurnTimings.e2e_s``); a trajectory's latency is the sum over its calls
(tool time excluded). A pure function over records: the load generator (``interleaf.pte_study``) only
produces them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy import optimize, stats

from interleaf.telemetry.hardware_profile import HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile
from interleaf.telemetry.pte import PTEVariant, TurnArrays, gamma, step_weight_pte, turn_pte
from interleaf.telemetry.records import Trajectory

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


class LatencyFit(BaseModel):
    """Non-negative least squares fit per call: ``latency ≈ c0 + c_prefill·P + c_decode·D + c_kv·L·D``
    (P = tokens the engine prefilled, D = tokens decoded, L = context length). Ratios to ``c_prefill``
    are the hardware's *empirical* PTE constants, to set beside the roofline's γ and weight term."""

    c0_s: float
    """Fixed cost per call, seconds."""
    c_prefill_s: float
    """Seconds per prefilled token."""
    c_decode_s: float
    """Seconds per decoded token (context-independent part: weight reads, per-step overhead)."""
    c_kv_s: float
    """Seconds per decoded token per context token (KV reads)."""
    r2: float
    """Coefficient of determination of the fit."""
    decode_token_pte: float | None
    """``c_decode / c_prefill``: one decoded token in prefill-token equivalents (empirical)."""
    gamma_empirical: float | None
    """``c_kv / c_prefill``: the empirical γ."""


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
    fit: LatencyFit | None = None
    """Empirical per-call cost model (None with fewer than 5 calls)."""

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
        if self.fit is not None:
            ft = self.fit
            parts = [
                f"latency fit per call (R² {ft.r2:.3f}): {ft.c0_s * 1e3:.1f} ms",
                f"+ {ft.c_prefill_s * 1e3:.3f} ms/prefill token",
                f"+ {ft.c_decode_s * 1e3:.2f} ms/decoded token",
                f"+ {ft.c_kv_s * 1e6:.3f} µs/(decoded·context) token;",
                f"one decoded token ≈ {_g(ft.decode_token_pte)} prefill tokens",
                f"(roofline weight term b·HOI/2 = {self.step_weight:.2f} at batch 1);",
                f"empirical γ {_g(ft.gamma_empirical)} (roofline {self.gamma:.3g})",
            ]
            lines += ["", " ".join(parts)]
        return "\n".join(lines) + "\n"


def _g(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def latency_fit(turns: TurnArrays, latency: np.ndarray) -> LatencyFit | None:
    """Fit ``latency ≈ c0 + c_prefill·P + c_decode·D + c_kv·L·D`` by non-negative least squares."""
    if len(latency) < 5:
        return None
    prefill = np.maximum(turns.prompt_tokens - turns.cached_tokens, 0).astype(np.float64)
    decode = turns.completion_tokens.astype(np.float64)
    kv = turns.prompt_tokens.astype(np.float64) * decode
    x = np.column_stack([np.ones_like(decode), prefill, decode, kv])
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # conditioning: fit on columns scaled to [0, 1]
    coef, _ = optimize.nnls(x / scale, latency)
    coef = coef / scale
    resid = latency - x @ coef
    ss_tot = float(((latency - latency.mean()) ** 2).sum())
    c0, cp, cd, ck = (float(c) for c in coef)
    return LatencyFit(
        c0_s=c0,
        c_prefill_s=cp,
        c_decode_s=cd,
        c_kv_s=ck,
        r2=1.0 - float((resid**2).sum()) / ss_tot if ss_tot else 0.0,
        decode_token_pte=cd / cp if cp > 0 else None,
        gamma_empirical=ck / cp if cp > 0 else None,
    )


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
        fit=latency_fit(turns, latency),
    )


__all__ = [
    "PRICE_RATIOS",
    "Correlation",
    "LatencyFit",
    "StudyResult",
    "latency_fit",
    "proxies_per_turn",
    "pte_latency_study",
]
