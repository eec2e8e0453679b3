"""Reports: one row per model × suite (accuracy, tokens, tool calls, PTE variants, patterns),
rendered as Markdown, JSON or CSV, and an optional PNG chart."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from interleaf.telemetry.hardware_profile import HARDWARE_PROFILES, HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile, find_model_profile
from interleaf.telemetry.patterns import Pattern
from interleaf.telemetry.pte_claims import RankingStability, ranking_stability
from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.summary import REPORTED_VARIANTS, JobSummary, summarize_job

FORMATS = ("md", "json", "csv")


class ReportRow(BaseModel):
    """One model × suite cell of a report."""

    model: str
    """Served model name."""
    suite: str
    """Task suite."""
    summary: JobSummary
    """Everything measured for the cell."""

    def flat(self) -> dict[str, Any]:
        """The row as flat columns (per-trajectory means for tokens and PTE)."""
        s = self.summary
        n = max(s.episodes, 1)
        row: dict[str, Any] = {
            "model": self.model,
            "suite": self.suite,
            "trajectories": s.episodes,
            "accuracy": s.accuracy,
            "turns": s.mean_turns,
            "tool_calls": s.mean_tool_calls,
            "prompt_tokens": s.prompt_tokens / n,
            "cached_tokens": s.cached_tokens / n,
            "completion_tokens": s.completion_tokens / n,
            "retention_requested": s.retention_requested,
            "retention_effective": s.retention_effective,
            "hardware": s.hardware,
        }
        for v in REPORTED_VARIANTS:
            row[f"pte_{v.value}" if not v.value.startswith("pte") else v.value] = s.pte_mean.get(v.value)
        row["unprofiled_models"] = ", ".join(s.unprofiled_models) or None
        for p in s.patterns:
            # A rule that cannot occur says why, rather than leaving a blank a reader takes for 0.
            row[f"{p.pattern.value}_freq"] = p.not_applicable or p.frequency
            row[f"{p.pattern.value}_x"] = p.cost_multiplier
        return row


def build_report(
    trajectories: Sequence[Trajectory], *, hardware: HardwareProfile | None = None, model: ModelProfile | None = None
) -> list[ReportRow]:
    """Group by (model, suite) and summarise each group."""
    groups: dict[tuple[str, str], list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault((t.model, t.suite), []).append(t)
    return [
        ReportRow(model=m, suite=s, summary=summarize_job(ts, hardware=hardware, model=model))
        for (m, s), ts in sorted(groups.items())
    ]


def hardware_ranking(trajectories: Sequence[Trajectory], *, model: ModelProfile | None = None) -> RankingStability:
    """Rank the models of ``trajectories`` by mean PTE on every shipped hardware profile (the paper's
    Table 4) and correlate the rankings (the paper: Spearman ρ 0.956–0.995). Models without a profile
    are left out; ``model`` prices every trajectory with one profile (then there is one model)."""
    by_model: dict[str, tuple[ModelProfile, list[Trajectory]]] = {}
    for t in trajectories:
        profile = model or find_model_profile(t.model)
        if profile is not None:
            by_model.setdefault(profile.name, (profile, []))[1].append(t)
    return ranking_stability(by_model, list(HARDWARE_PROFILES.values()))


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: line breaks as spaces, ``|`` escaped, and invisible
    or control characters (NUL, zero-width space, right-to-left override) shown as ``\\uXXXX``."""
    flat = " ".join(text.splitlines()).replace("|", "\\|")
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in flat)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or ±inf float replaced by None (JSON has no NaN; ``null`` it is)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1%}" if pct else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")
    return str(v)


def render_report(rows: Sequence[ReportRow], fmt: str = "md", *, ranking: RankingStability | None = None) -> str:
    """The report as Markdown (a main table and a pattern table), JSON (full summaries) or CSV (flat).
    ``ranking`` (``hardware_ranking``) adds a line on the stability of model rankings across hardware
    to the Markdown."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not supported; use one of {FORMATS}")
    if fmt == "json":
        data = [r.model_dump(mode="json", exclude={"summary": {"findings"}}) for r in rows]
        return json.dumps(_finite(data), indent=2, allow_nan=False)
    flat = [r.flat() for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        if flat:
            writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
            writer.writeheader()
            writer.writerows(flat)
        return buf.getvalue()
    hw = rows[0].summary.hardware if rows else "-"
    head = [
        "model",
        "suite",
        "n",
        "accuracy",
        "turns",
        "tool calls",
        "prompt tok",
        "completion tok",
        "retention",
        *(f"PTE {v.value}" for v in REPORTED_VARIANTS),
    ]
    lines = [f"PTE per trajectory (mean) on {hw}.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, f in zip(rows, flat, strict=True):
        cells = [
            _cell(r.model),
            _cell(r.suite),
            str(f["trajectories"]),
            _fmt(f["accuracy"], pct=True),
            _fmt(f["turns"]),
            _fmt(f["tool_calls"]),
            _fmt(f["prompt_tokens"]),
            _fmt(f["completion_tokens"]),
            _cell(r.summary.retention_text()),
            *(_fmt(r.summary.pte_mean.get(v.value)) for v in REPORTED_VARIANTS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    unprofiled = sorted({m for r in rows for m in r.summary.unprofiled_models})
    if unprofiled:
        lines.append(
            f"No PTE (–) for {_cell(', '.join(unprofiled))}: no model profile; pass --model-profile to price them."
        )
    for r in rows:
        priced_as = [name for name in r.summary.gamma if name != r.model]
        if priced_as:
            lines.append(f"{_cell(r.model)} × {_cell(r.suite)} priced as {', '.join(priced_as)}.")
    for r in rows:
        c = r.summary.pte_by_correctness
        if c is not None and r.summary.pte_mean:
            lines.append(f"PTE incorrect vs correct, {_cell(r.model)} × {_cell(r.suite)}: {c.text()}")
    if ranking is not None:
        lines.append(f"Model ranking by mean PTE across hardware profiles: {ranking.text()}")
    lines += [
        "",
        "PTE cost multiplier: mean evict_all PTE of the trajectories with the pattern ÷ that of the pattern-free "
        "ones (none of the four paper patterns) of the same model × suite.",
        "",
        "| model | suite | pattern | frequency | PTE cost multiplier |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        model, suite = _cell(r.model), _cell(r.suite)
        for p in r.summary.patterns:
            if p.with_pattern:
                lines.append(
                    f"| {model} | {suite} | {p.pattern.value} | {p.with_pattern}/{p.applicable} "
                    f"({p.frequency or 0:.0%}) | {_fmt(p.cost_multiplier)} |"
                )
            elif p.not_applicable:
                lines.append(f"| {model} | {suite} | {p.pattern.value} | {p.not_applicable} | – |")
    return "\n".join(lines) + "\n"


def plot_report(rows: Sequence[ReportRow], path: str | Path) -> Path:
    """A PNG: mean PTE per variant (left) and pattern frequency (right) per model × suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r.model}\n{r.suite}" for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(rows) + 4), 4.5))
    width = 0.8 / len(REPORTED_VARIANTS)
    for i, v in enumerate(REPORTED_VARIANTS):
        ax1.bar(x + i * width, [r.summary.pte_mean.get(v.value, 0.0) for r in rows], width, label=v.value)
    ax1.set_xticks(x + 0.4 - width / 2, labels, fontsize=7)
    ax1.set_ylabel(f"PTE per trajectory ({rows[0].summary.hardware if rows else ''})")
    ax1.legend(fontsize=7)
    seen = [
        p for p in Pattern if any(r.summary.pattern(p.value) and r.summary.pattern(p.value).with_pattern for r in rows)
    ]
    width2 = 0.8 / max(len(seen), 1)
    for i, p in enumerate(seen):
        ax2.bar(x + i * width2, [r.summary.pattern(p.value).frequency or 0.0 for r in rows], width2, label=p.value)
    ax2.set_xticks(x + 0.4 - width2 / 2, labels, fontsize=7)
    ax2.set_ylabel("share of trajectories")
    ax2.set_ylim(0, 1)
    if seen:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = [
    "FORMATS",
    "ReportRow",
    "build_report",
    "hardware_ranking",
    "plot_report",
    "render_report",
]
