"""The PTE-vs-latency study (the paper's Table 10 on our hardware): how well each cost proxy tracks
pure generation latency, per turn and per trajectory.

Proxies: every PTE variant, naive token count (prompt + completion), the cache-aware token count
(uncached prompt + completion: what a token counter that knows the prefix cache would charge),
API-pricing proxies with input:output price ratios 1:1.5, 1:3 and 1:4, and output tokens alone. Every
r carries a bootstrap 95% interval, each proxy's r is compared with the naive and cache-aware baselines
by a paired bootstrap of the difference, and every arm (``Trajectory.metadata["arm"]``) is also
analysed alone — the ``evict`` arm is where the paper's full-eviction assumption holds. Latency is the engine's
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

MIN_VERDICT_POINTS = 10
"""A comparison on fewer points (calls or trajectories) gets no verdict: a paired bootstrap of so few
points gives intervals that mean little (one point moves them anywhere)."""

CI_DIGITS = 3
"""Decimals a comparison's difference and interval are printed with; its verdict is read from the
interval rounded to them."""


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
    pearson_ci: tuple[float, float] | None = None
    """Bootstrap 95% percentile interval of ``pearson_r`` (points resampled with replacement)."""
    spearman_ci: tuple[float, float] | None = None
    """Bootstrap 95% percentile interval of ``spearman_rho``."""


class Comparison(BaseModel):
    """Is one proxy's Pearson r with latency higher than a baseline's? A paired bootstrap: both r are
    computed on the same resampled points, so the interval is of the difference itself."""

    proxy: str
    """The proxy (a PTE variant)."""
    baseline: str
    """``naive_tokens`` or ``cache_aware_tokens``."""
    level: str
    """``turn`` or ``trajectory``."""
    arm: str
    """``all`` or one arm's name."""
    n: int
    """Number of points."""
    difference: float | None
    """``r(proxy) − r(baseline)`` on the data."""
    ci: tuple[float, float] | None
    """Bootstrap 95% interval of the difference."""

    @property
    def verdict(self) -> str:
        """``higher`` / ``lower`` when the interval, rounded to the ``CI_DIGITS`` decimals it is printed
        with, excludes 0, else ``not separated`` (so the verdict never contradicts the printed interval);
        ``n/a (n < 10)`` on fewer than ``MIN_VERDICT_POINTS`` points, ``n/a`` without an interval."""
        if self.n < MIN_VERDICT_POINTS:
            return f"n/a (n < {MIN_VERDICT_POINTS})"
        if self.ci is None:
            return "n/a"
        low, high = (round(x, CI_DIGITS) for x in self.ci)
        if low > 0:
            return "higher"
        if high < 0:
            return "lower"
        return "not separated"


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
    """One entry per proxy and level, over every arm."""
    arms: dict[str, list[Correlation]] = Field(default_factory=dict)
    """The same, per arm (``Trajectory.metadata["arm"]``); empty when the runs carry no arm."""
    comparisons: list[Comparison] = Field(default_factory=list)
    """Each PTE variant against ``naive_tokens`` and ``cache_aware_tokens``, per level, overall and per arm."""
    bootstrap: int = 0
    """Bootstrap resamples behind every interval."""
    fit: LatencyFit | None = None
    """Empirical per-call cost model (None with fewer than 5 calls)."""
    decode_share: dict[str, dict[str, float]] = Field(default_factory=dict)
    """``all`` or arm → PTE variant → share of its summed PTE that is decode terms (γ·L·D, plus the
    weight reads of the ``*_plus`` variants): how much the study exercises the decode term at all."""

    def table(self) -> str:
        """Markdown: r with its 95% interval per proxy and level, overall and per arm, then the paired
        comparisons with the two token baselines."""
        lines = [
            f"model {self.model}, hardware {self.hardware.name} (HOI {self.hardware.hoi:.2f} FLOP/B), "
            f"γ={self.gamma:.4g}, weight-read/step={self.step_weight:.3g} PTE, {self.trajectories} trajectories, "
            f"{self.turns} calls, mean batch {self.mean_batch_size:.2f}; 95% bootstrap intervals "
            f"({self.bootstrap} resamples)",
        ]
        # Printed: every arm's correlations; the comparisons of the paper's variant and the measured ones
        # overall and on the evict arm (all of them are in ``comparisons``).
        arms = [("all", "all arms", self.correlations), *((a, f"arm {a} alone", c) for a, c in self.arms.items())]
        for key, title, corrs in arms:
            lines += ["", f"**{title}**", "", *_correlation_table(corrs)]
            if key in self.decode_share:
                shares = ", ".join(f"{v} {x:.0%}" for v, x in self.decode_share[key].items())
                lines += ["", f"decode terms' share of PTE: {shares}"]
        shown = [c for c in self.comparisons if c.arm in ("all", "evict") and c.proxy in PRINTED_COMPARISONS]
        if shown:
            lines += [
                "",
                "| proxy − baseline (Pearson r) | level | arm | n | difference [95% CI] | verdict |",
                "|---|---|---|---|---|---|",
            ]
            for c in shown:
                cells = [
                    f"{c.proxy} − {c.baseline}",
                    c.level,
                    c.arm,
                    str(c.n),
                    _r(c.difference, c.ci, digits=CI_DIGITS),
                    c.verdict,
                ]
                lines.append("| " + " | ".join(cells) + " |")
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


def _r(x: float | None, ci: tuple[float, float] | None, *, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" + ("" if ci is None else f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]")


def _correlation_table(corrs: Sequence[Correlation]) -> list[str]:
    by = {(c.proxy, c.level): c for c in corrs}
    proxies = list(dict.fromkeys(c.proxy for c in corrs))
    lines = [
        "| proxy | Pearson r (turn) | Spearman ρ (turn) | Pearson r (trajectory) | Spearman ρ (trajectory) |",
        "|---|---|---|---|---|",
    ]
    for p in proxies:
        t, j = by.get((p, "turn")), by.get((p, "trajectory"))
        cells = [
            _r(t and t.pearson_r, t and t.pearson_ci),
            _r(t and t.spearman_rho, t and t.spearman_ci),
            _r(j and j.pearson_r, j and j.pearson_ci),
            _r(j and j.spearman_rho, j and j.spearman_ci),
        ]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return lines


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


BOOTSTRAP = 2000
"""Resamples per interval (fixed seed: the same data give the same intervals)."""


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``x`` and ``y`` (shape (B, n)); NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


def _ranks_rows(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, axis=1)


def _interval(values: np.ndarray) -> tuple[float, float] | None:
    values = values[~np.isnan(values)]
    if values.size < 0.9 * BOOTSTRAP:  # too many degenerate resamples to mean anything
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _resamples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))


def _corr(proxy: str, level: str, x: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None) -> Correlation:
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(
            proxy=proxy, level=level, n=n, pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    idx = _resamples(n, 0) if idx is None else idx
    xb, yb = x[idx], y[idx]
    return Correlation(
        proxy=proxy,
        level=level,
        n=n,
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_p=float(sr.pvalue),
        pearson_ci=_interval(_pearson_rows(xb, yb)),
        spearman_ci=_interval(_pearson_rows(_ranks_rows(xb), _ranks_rows(yb))),
    )


def _compare(
    proxy: str, baseline: str, level: str, arm: str, x: np.ndarray, b: np.ndarray, y: np.ndarray, idx: np.ndarray
) -> Comparison:
    n = len(y)
    if n < 3 or np.ptp(y) == 0 or np.ptp(x) == 0 or np.ptp(b) == 0:
        return Comparison(proxy=proxy, baseline=baseline, level=level, arm=arm, n=n, difference=None, ci=None)
    diff = float(np.corrcoef(x, y)[0, 1] - np.corrcoef(b, y)[0, 1])
    boot = _pearson_rows(x[idx], y[idx]) - _pearson_rows(b[idx], y[idx])
    return Comparison(proxy=proxy, baseline=baseline, level=level, arm=arm, n=n, difference=diff, ci=_interval(boot))


def proxies_per_turn(turns: TurnArrays, model: ModelProfile, hw: HardwareProfile) -> dict[str, np.ndarray]:
    """Every cost proxy for every turn."""
    g, w = gamma(model, hw), step_weight_pte(model, hw)
    out = {v.value: turn_pte(turns, g, v, step_weight=w) for v in PTEVariant}
    prompt = turns.prompt_tokens.astype(np.float64)
    completion = turns.completion_tokens.astype(np.float64)
    out["naive_tokens"] = prompt + completion
    out["cache_aware_tokens"] = np.maximum(prompt - turns.cached_tokens, 0) + completion
    for k in PRICE_RATIOS:
        out[f"price_1:{k:g}"] = prompt + k * completion
    out["output_tokens"] = completion
    return out


_PREFILL_OF = {
    PTEVariant.EVICT_ALL: PTEVariant.EVICT_ALL,
    PTEVariant.PTE_PLUS: PTEVariant.EVICT_ALL,
    PTEVariant.MEASURED: PTEVariant.MEASURED,
    PTEVariant.MEASURED_PLUS: PTEVariant.MEASURED,
    PTEVariant.PERFECT_REUSE: PTEVariant.PERFECT_REUSE,
}
"""The variant whose prefill term each variant shares (evaluated with γ = 0 it is the prefill alone)."""


def _decode_share(proxies: dict[str, np.ndarray], turns: TurnArrays, keep: np.ndarray) -> dict[str, float]:
    out = {}
    for v in PTEVariant:
        total = float(proxies[v.value][keep].sum())
        prefill = float(turn_pte(turns, 0.0, _PREFILL_OF[v])[keep].sum())
        if total > 0:
            out[v.value] = 1.0 - prefill / total
    return out


PRINTED_COMPARISONS = ("evict_all", "measured", "pte_plus", "measured_plus")
"""Variants whose comparisons ``StudyResult.table`` prints (``perfect_reuse`` is a bound, not a proxy)."""

BASELINES = ("naive_tokens", "cache_aware_tokens")
"""Token counts every PTE variant must beat to claim it tracks latency better than counting tokens."""


def _level_points(
    proxies: dict[str, np.ndarray], latency: np.ndarray, trajectory: np.ndarray, keep: np.ndarray, n_traj: int
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Per level, the proxies and latency as points: one per call, or summed per trajectory."""
    members = np.unique(trajectory[keep])
    per_traj = {
        name: np.bincount(trajectory[keep], weights=v[keep], minlength=n_traj)[members] for name, v in proxies.items()
    }
    traj_latency = np.bincount(trajectory[keep], weights=latency[keep], minlength=n_traj)[members]
    return {
        "turn": ({name: v[keep] for name, v in proxies.items()}, latency[keep]),
        "trajectory": (per_traj, traj_latency),
    }


def _analyse(
    proxies: dict[str, np.ndarray], latency: np.ndarray, turns: TurnArrays, keep: np.ndarray, n_traj: int, arm: str
) -> tuple[list[Correlation], list[Comparison]]:
    corrs: list[Correlation] = []
    comps: list[Comparison] = []
    levels = _level_points(proxies, latency, turns.trajectory, keep, n_traj)
    for level, (xs, y) in levels.items():
        idx = _resamples(len(y), 1 if level == "turn" else 2)
        corrs += [_corr(name, level, x, y, idx) for name, x in xs.items()]
        for variant in PTEVariant:
            for base in BASELINES:
                comps.append(_compare(variant.value, base, level, arm, xs[variant.value], xs[base], y, idx))
    # Order as before: proxy by proxy, turn then trajectory.
    corrs.sort(key=lambda c: (list(proxies).index(c.proxy), c.level != "turn"))
    return corrs, comps


def pte_latency_study(trajectories: Sequence[Trajectory], model: ModelProfile, hw: HardwareProfile) -> StudyResult:
    """Pearson and Spearman correlation of latency with each proxy, per turn and per trajectory, with
    bootstrap intervals; overall and per arm; each PTE variant compared with the token baselines."""
    turns = TurnArrays.from_trajectories(trajectories)
    latency = np.array([t.timings.e2e_s for tr in trajectories for t in tr.turns], dtype=np.float64)
    n_traj = len(trajectories)
    proxies = proxies_per_turn(turns, model, hw)
    everything = np.ones(len(latency), dtype=bool)
    corrs, comps = _analyse(proxies, latency, turns, everything, n_traj, "all")
    shares = {"all": _decode_share(proxies, turns, everything)}
    arm_of = np.array([str(trajectories[k].metadata.get("arm", "")) for k in turns.trajectory], dtype=object)
    arms: dict[str, list[Correlation]] = {}
    for arm in sorted({a for a in arm_of if a}):
        arm_corrs, arm_comps = _analyse(proxies, latency, turns, arm_of == arm, n_traj, arm)
        arms[arm] = arm_corrs
        comps += arm_comps
        shares[arm] = _decode_share(proxies, turns, arm_of == arm)
    return StudyResult(
        model=model.name,
        hardware=hw,
        gamma=gamma(model, hw),
        step_weight=step_weight_pte(model, hw),
        trajectories=n_traj,
        turns=len(latency),
        mean_batch_size=float(turns.batch_size.mean()) if len(latency) else 0.0,
        correlations=corrs,
        arms=arms,
        comparisons=comps,
        bootstrap=BOOTSTRAP,
        fit=latency_fit(turns, latency),
        decode_share=shares,
    )


__all__ = [
    "BASELINES",
    "BOOTSTRAP",
    "CI_DIGITS",
    "MIN_VERDICT_POINTS",
    "PRICE_RATIOS",
    "Comparison",
    "Correlation",
    "LatencyFit",
    "StudyResult",
    "latency_fit",
    "proxies_per_turn",
    "pte_latency_study",
]
