"""The job summary: accuracy, turns, tool calls, tokens, cache hit rate, recomputed tokens,
terminations, wall time, PTE (every variant) and pattern statistics.

``summarize_job`` computes it from trajectories; ``JobSummary.rows()`` renders it. The job runner
stores it, the jobs API and dashboard serve it, ``interleaf run`` prints it at the end of a job and
``interleaf report`` tabulates one per model × suite.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import AliasChoices, BaseModel, Field

from interleaf.telemetry.hardware_profile import HARDWARE_PROFILES, REFERENCE_HARDWARE, HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile, find_model_profile
from interleaf.telemetry.patterns import (
    PatternConfig,
    PatternFinding,
    PatternStats,
    detect_patterns,
    not_applicable,
    pattern_stats,
)
from interleaf.telemetry.pte import PTEVariant, TurnArrays, gamma, pte_table
from interleaf.telemetry.pte_claims import CorrectnessCost, correctness_cost
from interleaf.telemetry.records import Trajectory

REPORTED_VARIANTS = (PTEVariant.EVICT_ALL, PTEVariant.MEASURED, PTEVariant.PERFECT_REUSE, PTEVariant.PTE_PLUS)
"""The variants summaries show (``measured_plus`` is available through ``pte_table``)."""


class JobSummary(BaseModel):
    """What a set of trajectories (a job, or one model × suite cell of a report) did and cost.

    The one job summary: ``JobRunner`` stores it (``JobResult.summary``, Redis ``JobRecord.summary``,
    ``<runs_dir>/<job-id>/summary.json``), the jobs API serves it, ``interleaf run`` prints its ``rows()``
    and ``interleaf report`` tabulates one per model × suite. Every field has a default so summaries
    stored by earlier versions still validate.
    """

    episodes: int = Field(0, validation_alias=AliasChoices("episodes", "trajectories"))
    """Trajectories summarised, one per episode (also read from ``trajectories``, the name reports
    used before there was one summary)."""
    models: list[str] = Field(default_factory=list)
    """Distinct ``Trajectory.model`` values."""
    suites: list[str] = Field(default_factory=list)
    """Distinct ``Trajectory.suite`` values."""
    scored: int = 0
    """Trajectories with a ``correct`` verdict (their task had a reference answer)."""
    correct: int = 0
    """Trajectories judged correct."""
    accuracy: float | None = None
    """``correct / scored`` (None when none was scored)."""
    mean_turns: float = 0.0
    """Mean LLM calls per trajectory."""
    tool_calls: int = 0
    """Tool calls made, all trajectories together."""
    mean_tool_calls: float = 0.0
    """Mean tool calls per trajectory."""
    prompt_tokens: int = 0
    """Sum over all turns of the context length sent (what a stateless API would bill as input);
    rebuilt from the token ids where the engine reported no figures."""
    cached_tokens: int = 0
    """Sum of prompt tokens served from the KV cache (session or radix prefix hit)."""
    recomputed_tokens: int = 0
    """Sum of prompt tokens prefilled again although an earlier call of the same trajectory had
    computed their KV (lost to eviction, a released hold, or a failover).

    Per turn this is ``CacheFigures.recomputed_tokens`` as interleaf's client recorded it: the client
    knows which tokens an earlier call computed, so its figure is authoritative. Where a turn carries
    0 — records of other producers, or written before the client recorded the figure — it is inferred
    from the token counts (``TurnArrays.recomputed_tokens``: ``prompt − new − 1 − cached``, the 1 being
    the previous turn's last sampled token, whose KV never existed; never on a trajectory's first turn
    or where the engine reported no figures). For the client's records the two agree, so a recorded 0
    stays 0. The ``recompute_after_pause`` pattern counts the same tokens."""
    completion_tokens: int = 0
    """Sum of generated tokens."""
    cache_hit_rate: float | None = None
    """``cached / prompt`` tokens over the turns whose cache figures the engine reported (None when
    none did)."""
    terminations: dict[str, int] = Field(default_factory=dict)
    """Trajectories per termination reason (``TerminationReason`` value)."""
    retention_requested: str | None = None
    """The retention policy the trajectories asked for (``Trajectory.retention_policy``); several
    are listed with their counts, most frequent first (``session 3, none 1``). None without trajectories."""
    retention_effective: str | None = None
    """The retention policy their KV really got (``Trajectory.retention_effective``), in the same
    form: differs from ``retention_requested`` where a server lacked what the policy needs (streaming
    sessions for ``session``, ``ttl``, ``adaptive``), e.g. requested ``session``, effective ``none``."""
    wall_s: float | None = None
    """Job wall time, seconds (None when unknown, e.g. a report built from a JSONL file)."""
    episode_wall_p50_s: float | None = None
    """Median episode wall time (``Trajectory.wall_s``), seconds."""
    hardware: str = REFERENCE_HARDWARE
    """Hardware profile the PTE figures use."""
    gamma: dict[str, float] = Field(default_factory=dict)
    """γ per model profile used."""
    unprofiled_models: list[str] = Field(default_factory=list)
    """Models with no known profile: their trajectories have no PTE (pass a profile to include them)."""
    pte_mean: dict[str, float] = Field(default_factory=dict)
    """Mean PTE per trajectory, by variant name (only over profiled trajectories)."""
    pte_total: dict[str, float] = Field(default_factory=dict)
    """Total PTE, by variant name."""
    pte_by_correctness: CorrectnessCost | None = None
    """Mean ``evict_all`` PTE of correct vs incorrect trajectories with a Mann–Whitney U test (the
    paper: incorrect trajectories cost more); None when nothing was scored."""
    patterns: list[PatternStats] = Field(default_factory=list)
    """Frequency and cost multiplier (on ``evict_all`` PTE) per pattern."""
    findings: list[PatternFinding] | None = None
    """Every finding, when asked for (``include_findings=True``)."""

    @property
    def trajectories(self) -> int:
        """``episodes`` under the name reports use (one trajectory per episode)."""
        return self.episodes

    def pattern(self, name: str) -> PatternStats | None:
        """The statistics of one pattern, by name."""
        return next((p for p in self.patterns if p.pattern.value == name), None)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows of the summary table: what ``interleaf run`` prints, the jobs API serves
        (``/v1/jobs/{id}/summary``) and the dashboard shows. The one rendering of a summary; empty when
        there is no trajectory."""
        if not self.episodes:
            return []

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f}%"

        accuracy = f"{pct(self.accuracy)} of {self.scored} scored" if self.scored else "n/a (none scored)"
        out = [
            ("episodes", str(self.episodes)),
            ("accuracy", accuracy),
            ("mean turns", f"{self.mean_turns:.2f}"),
            ("tool calls", f"{self.tool_calls} ({self.mean_tool_calls:.2f} per episode)"),
            ("prompt tokens", str(self.prompt_tokens)),
            ("completion tokens", str(self.completion_tokens)),
            ("cache hit rate", pct(self.cache_hit_rate)),
            ("recomputed tokens", str(self.recomputed_tokens)),
            ("terminations", ", ".join(f"{k} {v}" for k, v in sorted(self.terminations.items()))),
            ("retention", self.retention_text()),
            ("episode wall p50", "n/a" if self.episode_wall_p50_s is None else f"{self.episode_wall_p50_s:.1f} s"),
            ("wall time", "n/a" if self.wall_s is None else f"{self.wall_s:.1f} s"),
        ]
        # PTE on ``hardware`` (the paper's reference GPU unless asked otherwise) for each model's
        # published shape.
        for v in REPORTED_VARIANTS if self.pte_mean else ():
            out.append((f"PTE {v.value} (mean, {self.hardware})", f"{self.pte_mean[v.value]:,.0f}"))
        if self.unprofiled_models:
            out.append(("PTE", f"n/a for {', '.join(self.unprofiled_models)} (no model profile)"))
        if self.pte_by_correctness is not None and self.pte_mean:
            out.append(("PTE incorrect vs correct", self.pte_by_correctness.text()))
        seen = [p for p in self.patterns if p.with_pattern or p.not_applicable]
        patterns = ", ".join(
            f"{p.pattern.value} {p.frequency_text()}"
            + (f" (x{p.cost_multiplier:.2f} PTE)" if p.cost_multiplier else "")
            for p in seen
        )
        out.append(("patterns", patterns or "none"))
        return out

    def retention_text(self) -> str:
        """``session`` when the policy ran as requested, else ``requested session, effective none``."""
        if self.retention_requested == self.retention_effective:
            return self.retention_requested or "n/a"
        return f"requested {self.retention_requested}, effective {self.retention_effective}"

    def lines(self) -> list[str]:
        """``rows()`` as text lines, ``label value`` (for logs and notebooks)."""
        return [f"{label} {value}" for label, value in self.rows()]


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
        # A list, not TurnArrays: trailing trajectories with no turns (cancelled before their first call)
        # still get their row.
        table = pte_table([trajectories[i] for i in idx], profiles[name], hw)
        for v, values in table.items():
            out[v][idx] = values
        gammas[name] = gamma(profiles[name], hw)
    return out, gammas, sorted(unknown)


def summarize_job(
    trajectories: Sequence[Trajectory],
    *,
    wall_s: float | None = None,
    model: ModelProfile | None = None,
    hardware: HardwareProfile | None = None,
    pattern_config: PatternConfig | None = None,
    include_findings: bool = False,
) -> JobSummary:
    """Summarise trajectories: accuracy, turns, tool calls, tokens, cache hit rate, recomputed tokens,
    terminations, episode wall time, PTE per variant, pattern frequency and cost.

    ``wall_s``: the job's wall time, when known. ``hardware`` defaults to the paper's reference (H100
    PCIe) so figures compare with the paper; pass ``measure_cpu_profile()`` to price on this machine.
    ``model`` prices every trajectory with one profile instead of looking each ``Trajectory.model`` up.
    """
    hw = hardware or HARDWARE_PROFILES[REFERENCE_HARDWARE]
    n = len(trajectories)
    turns = TurnArrays.from_trajectories(trajectories)
    values, gammas, unknown = trajectory_pte_values(trajectories, hw, model)
    findings = [detect_patterns(t, config=pattern_config, gamma=_gamma_for(t, model, gammas)) for t in trajectories]
    profiled = ~np.isnan(values[PTEVariant.EVICT_ALL])
    verdicts = [t.correct for t in trajectories if t.correct is not None]
    # Cost is compared within (model, suite) settings; unpriced trajectories (NaN) count for frequency only.
    stats = pattern_stats(
        findings,
        values[PTEVariant.EVICT_ALL],
        settings=[(t.model, t.suite) for t in trajectories],
        not_applicable=[not_applicable(t) for t in trajectories],
    )
    tool_calls = sum(t.tool_call_count for t in trajectories)
    reported = turns.reported if turns.reported is not None else np.ones(len(turns.prompt_tokens), dtype=bool)
    reported_prompt = int(turns.prompt_tokens[reported].sum())
    terminations = Counter(t.termination.value for t in trajectories)
    return JobSummary(
        episodes=n,
        models=sorted({t.model for t in trajectories}),
        suites=sorted({t.suite for t in trajectories}),
        scored=len(verdicts),
        correct=sum(verdicts),
        accuracy=sum(verdicts) / len(verdicts) if verdicts else None,
        mean_turns=len(turns.prompt_tokens) / n if n else 0.0,
        tool_calls=tool_calls,
        mean_tool_calls=tool_calls / n if n else 0.0,
        prompt_tokens=int(turns.prompt_tokens.sum()),
        cached_tokens=int(turns.cached_tokens.sum()),
        recomputed_tokens=_recomputed(trajectories, turns),
        completion_tokens=int(turns.completion_tokens.sum()),
        cache_hit_rate=int(turns.cached_tokens[reported].sum()) / reported_prompt if reported_prompt else None,
        terminations=dict(sorted(terminations.items())),
        retention_requested=_tally(t.retention_policy for t in trajectories),
        retention_effective=_tally(t.retention_effective for t in trajectories),
        wall_s=wall_s,
        episode_wall_p50_s=statistics.median(t.wall_s for t in trajectories) if n else None,
        hardware=hw.name,
        gamma=gammas,
        unprofiled_models=unknown,
        pte_mean={v.value: float(values[v][profiled].mean()) for v in PTEVariant} if profiled.any() else {},
        pte_total={v.value: float(values[v][profiled].sum()) for v in PTEVariant} if profiled.any() else {},
        pte_by_correctness=correctness_cost(trajectories, values[PTEVariant.EVICT_ALL]) if verdicts else None,
        patterns=stats,
        findings=[f for fs in findings for f in fs] if include_findings else None,
    )


def _tally(values: Iterable[str]) -> str | None:
    """One value as itself; several as ``a 3, b 1`` (most frequent first); None when there is none."""
    counts = Counter(values)
    if len(counts) <= 1:
        return next(iter(counts), None)
    return ", ".join(f"{value} {n}" for value, n in counts.most_common())


def _gamma_for(traj: Trajectory, model: ModelProfile | None, gammas: dict[str, float]) -> float | None:
    profile = model or find_model_profile(traj.model)
    return gammas.get(profile.name) if profile else None


def _recomputed(trajectories: Sequence[Trajectory], turns: TurnArrays) -> int:
    """Recomputed tokens as ``JobSummary.recomputed_tokens`` defines them: the client's per-turn figure,
    inferred from the token counts where a turn carries 0."""
    recorded = np.array([t.cache.recomputed_tokens for tr in trajectories for t in tr.turns], dtype=np.int64)
    return int(np.where(recorded > 0, recorded, turns.recomputed_tokens()).sum())


__all__ = ["REPORTED_VARIANTS", "JobSummary", "summarize_job", "trajectory_pte_values"]
