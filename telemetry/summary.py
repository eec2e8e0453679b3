"""Job summaries: accuracy, tokens, tool calls, PTE (every variant) and pattern statistics.

``summarize_job`` is what ``interleaf run`` prints at the end of a job and what ``interleaf report``
tabulates per model × suite.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from interleaf.telemetry.hardware_profile import HARDWARE_PROFILES, REFERENCE_HARDWARE, HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile, find_model_profile
from interleaf.telemetry.patterns import PatternConfig, PatternFinding, PatternStats, detect_patterns, pattern_stats
from interleaf.telemetry.pte import PTEVariant, TurnArrays, gamma, pte_table
from interleaf.telemetry.records import Trajectory

REPORTED_VARIANTS = (PTEVariant.EVICT_ALL, PTEVariant.MEASURED, PTEVariant.PERFECT_REUSE, PTEVariant.PTE_PLUS)
"""The variants summaries show (``measured_plus`` is available through ``pte_table``)."""


class JobSummary(BaseModel):
    """What a set of trajectories (a job, or one model × suite cell of a report) did and cost."""

    trajectories: int
    """Number of trajectories summarised."""
    models: list[str]
    """Distinct ``Trajectory.model`` values."""
    suites: list[str]
    """Distinct ``Trajectory.suite`` values."""
    scored: int
    """Trajectories with a ``correct`` verdict."""
    accuracy: float | None
    """Share of scored trajectories judged correct (None when none was scored)."""
    mean_turns: float
    """Mean LLM calls per trajectory."""
    mean_tool_calls: float
    """Mean tool calls per trajectory."""
    prompt_tokens: int
    """Sum over all turns of the context length sent (what a stateless API would bill as input)."""
    cached_tokens: int
    """Sum of prompt tokens served from the KV cache."""
    recomputed_tokens: int
    """Sum of tokens re-prefilled after their KV was lost (eviction or release)."""
    completion_tokens: int
    """Sum of generated tokens."""
    hardware: str
    """Hardware profile the PTE figures use."""
    gamma: dict[str, float] = Field(default_factory=dict)
    """γ per model profile used."""
    unprofiled_models: list[str] = Field(default_factory=list)
    """Models with no known profile: their trajectories have no PTE (pass a profile to include them)."""
    pte_mean: dict[str, float] = Field(default_factory=dict)
    """Mean PTE per trajectory, by variant name (only over profiled trajectories)."""
    pte_total: dict[str, float] = Field(default_factory=dict)
    """Total PTE, by variant name."""
    patterns: list[PatternStats] = Field(default_factory=list)
    """Frequency and cost multiplier (on ``evict_all`` PTE) per pattern."""
    findings: list[PatternFinding] | None = None
    """Every finding, when asked for (``include_findings=True``)."""

    def pattern(self, name: str) -> PatternStats | None:
        """The statistics of one pattern, by name."""
        return next((p for p in self.patterns if p.pattern.value == name), None)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows of PTE and pattern figures, for a run's summary table."""
        out: list[tuple[str, str]] = []
        if self.pte_mean:
            for v in (PTEVariant.EVICT_ALL, PTEVariant.MEASURED, PTEVariant.PTE_PLUS):
                out.append((f"PTE {v.value} (mean, {self.hardware})", f"{self.pte_mean[v.value]:,.0f}"))
        elif self.unprofiled_models:
            out.append(("PTE", f"n/a (no profile for {', '.join(self.unprofiled_models)})"))
        seen = [p for p in self.patterns if p.with_pattern]
        out.append(
            (
                "patterns",
                ", ".join(
                    f"{p.pattern.value} {p.with_pattern}"
                    + (f" (x{p.cost_multiplier:.2f} PTE)" if p.cost_multiplier else "")
                    for p in seen
                )
                or "none",
            )
        )
        return out

    def lines(self) -> list[str]:
        """A short human-readable rendering (for ``interleaf run``'s closing summary)."""
        acc = "n/a" if self.accuracy is None else f"{self.accuracy:.1%} of {self.scored}"
        out = [
            f"trajectories {self.trajectories}  accuracy {acc}  turns/traj {self.mean_turns:.2f}  "
            f"tool calls/traj {self.mean_tool_calls:.2f}",
            f"tokens: prompt {self.prompt_tokens}  cached {self.cached_tokens}  recomputed {self.recomputed_tokens}  "
            f"completion {self.completion_tokens}",
        ]
        if self.pte_mean:
            out.append(
                f"PTE/traj on {self.hardware}: "
                + "  ".join(f"{k} {self.pte_mean[k]:,.0f}" for k in (v.value for v in REPORTED_VARIANTS))
            )
        seen = [p for p in self.patterns if p.with_pattern]
        if seen:
            out.append(
                "patterns: "
                + "  ".join(
                    f"{p.pattern.value} {p.with_pattern}/{p.trajectories}"
                    + (f" (x{p.cost_multiplier:.2f} PTE)" if p.cost_multiplier else "")
                    for p in seen
                )
            )
        if self.unprofiled_models:
            out.append(f"no PTE for unprofiled models: {', '.join(self.unprofiled_models)}")
        return out


def trajectory_pte_values(
    trajectories: Sequence[Trajectory],
    hw: HardwareProfile,
    model: ModelProfile | None = None,
) -> tuple[dict[PTEVariant, np.ndarray], dict[str, float], list[str]]:
    """Per-trajectory PTE for every variant (NaN where no profile is known), γ per profile, unknown models.

    ``model`` forces one profile for all; otherwise each trajectory's ``model`` is looked up in the
    shipped profiles.
    """
    n = len(trajectories)
    out = {v: np.full(n, np.nan) for v in PTEVariant}
    gammas: dict[str, float] = {}
    unknown: set[str] = set()
    groups: dict[str, list[int]] = {}
    profiles: dict[str, ModelProfile] = {}
    for k, t in enumerate(trajectories):
        profile = model or find_model_profile(t.model)
        if profile is None:
            unknown.add(t.model or "<unnamed>")
            continue
        profiles[profile.name] = profile
        groups.setdefault(profile.name, []).append(k)
    for name, idx in groups.items():
        table = pte_table(TurnArrays.from_trajectories([trajectories[i] for i in idx]), profiles[name], hw)
        for v, values in table.items():
            out[v][idx] = values
        gammas[name] = gamma(profiles[name], hw)
    return out, gammas, sorted(unknown)


def summarize_job(
    trajectories: Sequence[Trajectory],
    *,
    model: ModelProfile | None = None,
    hardware: HardwareProfile | None = None,
    pattern_config: PatternConfig | None = None,
    include_findings: bool = False,
) -> JobSummary:
    """Summarise trajectories: accuracy, tokens, tool calls, PTE per variant, pattern frequency and cost.

    ``hardware`` defaults to the paper's reference (H100 PCIe) so figures compare with the paper;
    pass ``measure_cpu_profile()`` to price on this machine.
    """
    hw = hardware or HARDWARE_PROFILES[REFERENCE_HARDWARE]
    n = len(trajectories)
    turns = TurnArrays.from_trajectories(trajectories)
    values, gammas, unknown = trajectory_pte_values(trajectories, hw, model)
    findings = [detect_patterns(t, config=pattern_config, gamma=_gamma_for(t, model, gammas)) for t in trajectories]
    profiled = ~np.isnan(values[PTEVariant.EVICT_ALL])
    scored = [t.correct for t in trajectories if t.correct is not None]
    stats = pattern_stats(
        [f for f, ok in zip(findings, profiled, strict=True) if ok], values[PTEVariant.EVICT_ALL][profiled]
    )
    if not profiled.all():
        # Frequencies must count every trajectory, priced or not.
        freq = pattern_stats(findings, np.zeros(n))
        stats = [
            s.model_copy(
                update={
                    "trajectories": f.trajectories,
                    "with_pattern": f.with_pattern,
                    "findings": f.findings,
                    "frequency": f.frequency,
                }
            )
            for s, f in zip(stats, freq, strict=True)
        ]
    return JobSummary(
        trajectories=n,
        models=sorted({t.model for t in trajectories}),
        suites=sorted({t.suite for t in trajectories}),
        scored=len(scored),
        accuracy=float(np.mean(scored)) if scored else None,
        mean_turns=float(len(turns.prompt_tokens) / n) if n else 0.0,
        mean_tool_calls=float(np.mean([t.tool_call_count for t in trajectories])) if n else 0.0,
        prompt_tokens=int(turns.prompt_tokens.sum()),
        cached_tokens=int(turns.cached_tokens.sum()),
        recomputed_tokens=_recomputed(trajectories, turns),
        completion_tokens=int(turns.completion_tokens.sum()),
        hardware=hw.name,
        gamma=gammas,
        unprofiled_models=unknown,
        pte_mean={v.value: float(values[v][profiled].mean()) for v in PTEVariant} if profiled.any() else {},
        pte_total={v.value: float(values[v][profiled].sum()) for v in PTEVariant} if profiled.any() else {},
        patterns=stats,
        findings=[f for fs in findings for f in fs] if include_findings else None,
    )


def _gamma_for(traj: Trajectory, model: ModelProfile | None, gammas: dict[str, float]) -> float | None:
    profile = model or find_model_profile(traj.model)
    return gammas.get(profile.name) if profile else None


def _recomputed(trajectories: Sequence[Trajectory], turns: TurnArrays) -> int:
    """Engine-reported recomputed tokens where given, else prompt - cached - new (never on turn 0)."""
    reported = np.array([t.cache.recomputed_tokens for tr in trajectories for t in tr.turns], dtype=np.int64)
    return int(np.where(reported > 0, reported, turns.recomputed_tokens()).sum())


def load_trajectories(source: str | Path) -> list[Trajectory]:
    """Trajectories from a JSONL file (one ``Trajectory`` per line; ``.gz`` compressed is fine), or a job
    id looked up as ``<runs_dir>/<job-id>/trajectories.jsonl``."""
    path = Path(source)
    if not path.exists():
        from interleaf.settings import runs_dir

        candidate = runs_dir() / str(source) / "trajectories.jsonl"
        if not candidate.exists():
            raise FileNotFoundError(
                f"source={str(source)!r} is neither a JSONL file nor a job id with {candidate}; "
                "pass a trajectories.jsonl path or set INTERLEAF_RUNS_DIR"
            )
        path = candidate
    out = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Trajectory.model_validate_json(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno} is not a Trajectory record: {exc}") from exc
    return out


__all__ = ["REPORTED_VARIANTS", "JobSummary", "load_trajectories", "summarize_job", "trajectory_pte_values"]
