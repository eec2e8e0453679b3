"""Job-level pattern statistics: frequency, and the cost multiplier computed within one setting.

PAPERS.md §B: cost multiplier = mean PTE of trajectories with the pattern ÷ mean PTE of pattern-free
ones (none of the four paper patterns) *in the same setting*. A job can mix models and suites whose PTE
differs by orders of magnitude, so trajectories are compared only within their (model, suite) group; the
job's multiplier is the mean of the groups' multipliers weighted by how many trajectories with the
pattern each group has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from interleaf.telemetry.patterns.findings import PAPER_PATTERNS, Pattern, PatternFinding

Setting = tuple[str, str]
"""(model, suite): trajectories whose PTE may be compared."""


class GroupCost(BaseModel):
    """One pattern's cost within one (model, suite) setting."""

    model: str
    """Served model name."""
    suite: str
    """Task suite."""
    with_pattern: int
    """Priced trajectories of this setting with the pattern."""
    without_pattern: int
    """Priced baseline trajectories of this setting."""
    mean_pte_with: float | None = None
    """Their mean PTE (None when none has the pattern)."""
    mean_pte_without: float | None = None
    """Mean PTE of the baseline (None when there is none)."""
    cost_multiplier: float | None = None
    """``mean_pte_with / mean_pte_without``; None when either side is empty."""


class PatternStats(BaseModel):
    """How often a pattern occurs in a set of trajectories and what it costs."""

    pattern: Pattern
    """Which pattern."""
    trajectories: int
    """Trajectories examined."""
    applicable: int
    """Trajectories the rule applies to (``trajectories`` minus those where it cannot occur)."""
    with_pattern: int
    """Trajectories with at least one finding."""
    findings: int
    """Total findings."""
    frequency: float | None
    """``with_pattern / applicable``; None when the rule applies to no trajectory."""
    not_applicable: str | None = None
    """Why the rule applies to no trajectory (e.g. ``n/a (constrained decoding)``); None otherwise."""
    mean_pte_with: float | None = None
    """Mean PTE of trajectories with the pattern, over the settings that have both sides."""
    mean_pte_without: float | None = None
    """Mean PTE of the baseline, over the same settings."""
    cost_multiplier: float | None = None
    """Within-setting multipliers averaged, weighted by trajectories with the pattern; None when no
    setting has both sides."""
    groups: list[GroupCost] = Field(default_factory=list)
    """The multiplier per (model, suite) setting."""
    baseline: str | None = None
    """What the multiplier divides by (``pattern_stats``' ``baseline``): ``pattern_free`` trajectories
    (none of the four paper patterns) or those ``without_pattern`` (free of this one only). None in
    summaries stored before the field existed, whose multipliers divide by ``without_pattern``."""

    def frequency_text(self) -> str:
        """``3/8`` or the not-applicable reason."""
        return self.not_applicable or f"{self.with_pattern}/{self.applicable}"


def pattern_stats(
    findings: Sequence[Sequence[PatternFinding]],
    pte_values: Sequence[float] | np.ndarray,
    *,
    baseline: str = "pattern_free",
    settings: Sequence[Setting] | None = None,
    not_applicable: Sequence[Mapping[Pattern, str]] | None = None,
) -> list[PatternStats]:
    """Job-level frequency and cost multiplier per pattern.

    ``findings[k]``, ``pte_values[k]``, ``settings[k]`` and ``not_applicable[k]`` belong to trajectory
    k. A NaN PTE (an unprofiled model) counts for frequency but not for cost. ``baseline``, what the
    trajectories with the pattern are compared with: ``pattern_free`` (the default; PAPERS.md §B read
    literally: trajectories with none of the four paper patterns, and, for our own patterns, not this
    one either) or ``without_pattern`` [ours] (trajectories free of *this* pattern, whatever other
    patterns they have: a larger baseline, and a smaller multiplier where patterns come together).
    ``settings`` default to one shared setting;
    ``not_applicable`` (``detect.not_applicable``) removes trajectories where a rule cannot occur.
    """
    if baseline not in ("without_pattern", "pattern_free"):
        raise ValueError(f"baseline={baseline!r} is not known; use 'without_pattern' or 'pattern_free'")
    values = np.asarray(pte_values, dtype=np.float64)
    n = len(findings)
    if len(values) != n:
        raise ValueError(f"pte_values has {len(values)} entries but findings has {n}")
    keys = list(settings) if settings is not None else [("", "")] * n
    skipped = list(not_applicable) if not_applicable is not None else [{}] * n
    if len(keys) != n or len(skipped) != n:
        raise ValueError(f"settings and not_applicable need {n} entries, one per trajectory")
    priced = ~np.isnan(values)
    present = {p: np.array([any(f.pattern == p for f in fs) for fs in findings], dtype=bool) for p in Pattern}
    clean = ~np.any([present[p] for p in PAPER_PATTERNS], axis=0) if n else np.zeros(0, dtype=bool)
    out = []
    for p in Pattern:
        applies = np.array([p not in s for s in skipped], dtype=bool)
        has = present[p] & applies
        base = applies & (~has if baseline == "without_pattern" else clean & ~has)
        groups = _group_costs(keys, values, has & priced, base & priced)
        comparable = [g for g in groups if g.cost_multiplier is not None]
        weight = sum(g.with_pattern for g in comparable)
        comparable_keys = {(g.model, g.suite) for g in comparable}
        in_comparable = np.array([k in comparable_keys for k in keys], dtype=bool)
        with_vals = values[has & priced & in_comparable]
        base_vals = values[base & priced & in_comparable]
        reasons = {s[p] for s in skipped if p in s}
        n_applicable = int(applies.sum())
        out.append(
            PatternStats(
                pattern=p,
                trajectories=n,
                applicable=n_applicable,
                with_pattern=int(has.sum()),
                findings=sum(1 for fs, ok in zip(findings, applies, strict=True) if ok for f in fs if f.pattern == p),
                frequency=float(has.sum() / n_applicable) if n_applicable else None,
                not_applicable=(sorted(reasons)[0] if reasons else None) if n and not n_applicable else None,
                mean_pte_with=float(with_vals.mean()) if with_vals.size else None,
                mean_pte_without=float(base_vals.mean()) if base_vals.size else None,
                cost_multiplier=sum(g.cost_multiplier * g.with_pattern for g in comparable) / weight  # type: ignore[operator]
                if weight
                else None,
                groups=groups,
                baseline=baseline,
            )
        )
    return out


def _group_costs(keys: list[Setting], values: np.ndarray, has: np.ndarray, base: np.ndarray) -> list[GroupCost]:
    out = []
    for key in sorted(set(keys)):
        member = np.array([k == key for k in keys], dtype=bool)
        w, b = values[has & member], values[base & member]
        mean_w = float(w.mean()) if w.size else None
        mean_b = float(b.mean()) if b.size else None
        out.append(
            GroupCost(
                model=key[0],
                suite=key[1],
                with_pattern=int(w.size),
                without_pattern=int(b.size),
                mean_pte_with=mean_w,
                mean_pte_without=mean_b,
                cost_multiplier=mean_w / mean_b if mean_w is not None and mean_b else None,
            )
        )
    return out


__all__ = ["GroupCost", "PatternStats", "Setting", "pattern_stats"]
