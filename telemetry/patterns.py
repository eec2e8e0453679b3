"""Inefficiency patterns in tool-integrated reasoning, each with evidence.

The four rules of arXiv 2604.05404 App. E (../shared/PAPERS.md §B) and three of ours:

| pattern | rule |
|---|---|
| confirmatory_tool_usage [paper] | the answer appears in the reasoning before a python call "verifies" it |
| tool_mixing [paper] | more than one distinct tool is called in the trajectory |
| lack_of_tool_priors [paper] | a python call returns empty output (missing print) or an execution error |
| tool_format_collapse [paper] | a tool call fails to parse as JSON or violates the tool's schema |
| long_tool_response [ours] | one tool result takes a large share of the context it is carried in |
| recompute_after_pause [ours] | a turn re-prefilled tokens an earlier call computed (KV lost in a pause) |
| redundant_tool_call [ours] | the same tool is called with identical arguments more than once |

Job level: frequency (share of trajectories with the pattern) and cost multiplier (mean PTE of
trajectories with it ÷ mean PTE of those without it, PAPERS.md §B).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, Field

from interleaf.telemetry.pte import TurnArrays
from interleaf.telemetry.records import ToolCallRecord, Trajectory


class Pattern(StrEnum):
    """The inefficiency patterns interleaf detects."""

    CONFIRMATORY_TOOL_USAGE = "confirmatory_tool_usage"
    """[paper] Answer already in the reasoning before the python tool is called to confirm it."""
    TOOL_MIXING = "tool_mixing"
    """[paper] More than one distinct tool type used."""
    LACK_OF_TOOL_PRIORS = "lack_of_tool_priors"
    """[paper] Python call with empty output or an execution error."""
    TOOL_FORMAT_COLLAPSE = "tool_format_collapse"
    """[paper] Tool call JSON parse error or schema violation."""
    LONG_TOOL_RESPONSE = "long_tool_response"
    """[ours] A tool result inflates the context every later turn decodes against."""
    RECOMPUTE_AFTER_PAUSE = "recompute_after_pause"
    """[ours] Tokens recomputed after a pause because their KV was evicted or released."""
    REDUNDANT_TOOL_CALL = "redundant_tool_call"
    """[ours] Identical tool call (same name, same arguments) repeated."""


PAPER_PATTERNS = (
    Pattern.CONFIRMATORY_TOOL_USAGE,
    Pattern.TOOL_MIXING,
    Pattern.LACK_OF_TOOL_PRIORS,
    Pattern.TOOL_FORMAT_COLLAPSE,
)


class TextSpan(BaseModel):
    """A piece of a trajectory that is evidence for a finding."""

    turn: int
    """Turn index."""
    source: str
    """Where the span lies: ``text`` (completion text), ``tool_result``, ``tool_raw`` (the call's raw
    text) or ``format_error``."""
    call_id: str | None = None
    """Tool call id for ``tool_result`` / ``tool_raw`` spans."""
    start: int
    """Start character offset in the source string."""
    end: int
    """End character offset (exclusive)."""
    excerpt: str
    """The spanned text (cut to 200 characters)."""


class PatternFinding(BaseModel):
    """One occurrence of a pattern in one trajectory."""

    pattern: Pattern
    """Which pattern."""
    trajectory_id: str
    """Trajectory the finding is about."""
    turns: list[int]
    """Turn indices involved, ascending."""
    spans: list[TextSpan] = Field(default_factory=list)
    """Text evidence."""
    detail: str = ""
    """What was seen, in words."""
    figures: dict[str, float] = Field(default_factory=dict)
    """Numbers behind the finding (e.g. ``tool_tokens``, ``share``, ``recomputed_tokens``, ``extra_pte``)."""


class PatternConfig(BaseModel):
    """Detector settings ([ours] thresholds are named here, not hidden in code)."""

    python_tools: list[str] = Field(
        default_factory=lambda: ["python", "python_tool", "run_python", "execute_python", "code_interpreter"]
    )
    """Tool names treated as a python interpreter (any name containing ``python`` is, too)."""
    format_error_types: list[str] = Field(
        default_factory=lambda: [
            "ToolArgumentError",
            "ToolFormatError",
            "ToolSchemaError",
            "ToolNotFound",
            "UnknownTool",
            "ValidationError",
            "JSONDecodeError",
        ]
    )
    """``ToolCallRecord.error_type`` values that mean the call itself was malformed."""
    long_response_min_tokens: int = 256
    """A tool result shorter than this (in tokens) is never 'long'."""
    long_response_min_share: float = 0.25
    """...and it must be at least this share of the final context."""


_CALL_BLOCK = re.compile(r"<tool_call>.*?(</tool_call>|$)", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_SANDBOX_EMPTY = re.compile(r"^\s*stdout:\s*stderr:\s*$", re.S)
_EXEC_ERROR = re.compile(r"Traceback \(most recent call last\)|^\s*[A-Z]\w*(Error|Exception): |stderr:\s*\S", re.M)


def _excerpt(s: str) -> str:
    return s if len(s) <= 200 else s[:197] + "..."


def _whole_span(turn: int, source: str, text: str, call_id: str | None = None) -> TextSpan:
    """Evidence that is a whole string (a tool result, a call's raw text, a format error)."""
    return TextSpan(turn=turn, source=source, call_id=call_id, start=0, end=len(text), excerpt=_excerpt(text))


def _is_python(name: str, cfg: PatternConfig) -> bool:
    return name in cfg.python_tools or "python" in name.lower()


def final_answer(traj: Trajectory) -> str | None:
    """The trajectory's answer: ``Trajectory.answer``, else the last ``<answer>`` tag in its text."""
    if traj.answer:
        return traj.answer
    for turn in reversed(traj.turns):
        found = _ANSWER.findall(turn.text)
        if found:
            return found[-1]
    return None


def _normalise_answer(answer: str) -> str:
    a = answer.strip()
    m = re.fullmatch(r"\\boxed\{(.*)\}", a)
    if m:
        a = m.group(1)
    return a.strip().strip("$").strip().rstrip(".")


def _confirmatory(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    answer = final_answer(traj)
    if not answer:
        return []
    a = _normalise_answer(answer)
    if not a:
        return []
    pat = re.compile(r"(?<![\w.])" + re.escape(a) + r"(?![\w]|\.\d)", re.I)
    earlier: list[TextSpan] = []
    for turn in traj.turns:
        first_call = turn.text.find("<tool_call>")
        masked = [(m.start(), m.end()) for m in _CALL_BLOCK.finditer(turn.text)]
        masked += [(m.start(), m.end()) for m in _ANSWER.finditer(turn.text)]
        spans = [
            TextSpan(turn=turn.index, source="text", start=m.start(), end=m.end(), excerpt=m.group(0))
            for m in pat.finditer(turn.text)
            if not any(s <= m.start() < e for s, e in masked)
        ]
        python_calls = [c for c in turn.tool_calls if _is_python(c.name, cfg)]
        if python_calls:
            before = [s for s in spans if first_call < 0 or s.start < first_call]
            evidence = earlier + before
            if evidence:
                call = python_calls[0]
                return [
                    PatternFinding(
                        pattern=Pattern.CONFIRMATORY_TOOL_USAGE,
                        trajectory_id=traj.id,
                        turns=sorted({s.turn for s in evidence} | {turn.index}),
                        spans=[
                            evidence[0],
                            _whole_span(turn.index, "tool_raw", call.raw, call_id=call.id),
                        ],
                        detail=f"answer {a!r} stated in turn {evidence[0].turn} before the python call "
                        f"in turn {turn.index}",
                    )
                ]
        earlier += spans
    return []


def _tool_mixing(traj: Trajectory) -> list[PatternFinding]:
    first: dict[str, int] = {}
    for turn in traj.turns:
        for call in turn.tool_calls:
            first.setdefault(call.name, turn.index)
    if len(first) < 2:
        return []
    return [
        PatternFinding(
            pattern=Pattern.TOOL_MIXING,
            trajectory_id=traj.id,
            turns=sorted(set(first.values())),
            detail="tools used: " + ", ".join(f"{n} (first in turn {t})" for n, t in first.items()),
            figures={"distinct_tools": float(len(first))},
        )
    ]


def _lack_of_priors(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    out = []
    offered = set(traj.tools)
    for turn in traj.turns:
        for call in turn.tool_calls:
            # A malformed call never executed: that is format collapse, not a missing prior.
            if not _is_python(call.name, cfg) or _call_format_problem(call, offered, cfg):
                continue
            empty = not call.result.strip() or bool(_SANDBOX_EMPTY.match(call.result))
            error = call.is_error or bool(_EXEC_ERROR.search(call.result))
            if not (empty or error):
                continue
            kind = "empty output (missing print?)" if empty else "execution error"
            out.append(
                PatternFinding(
                    pattern=Pattern.LACK_OF_TOOL_PRIORS,
                    trajectory_id=traj.id,
                    turns=[turn.index],
                    spans=[_whole_span(turn.index, "tool_result", call.result, call_id=call.id)],
                    detail=f"{call.name} call {call.id}: {kind}",
                )
            )
    return out


def _format_collapse(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    out = []
    offered = set(traj.tools)
    for turn in traj.turns:
        if turn.format_error:
            out.append(
                PatternFinding(
                    pattern=Pattern.TOOL_FORMAT_COLLAPSE,
                    trajectory_id=traj.id,
                    turns=[turn.index],
                    spans=[_whole_span(turn.index, "format_error", turn.format_error)],
                    detail=f"turn {turn.index}: unparseable tool call: {turn.format_error}",
                )
            )
        for call in turn.tool_calls:
            reason = _call_format_problem(call, offered, cfg)
            if reason:
                out.append(
                    PatternFinding(
                        pattern=Pattern.TOOL_FORMAT_COLLAPSE,
                        trajectory_id=traj.id,
                        turns=[turn.index],
                        spans=[_whole_span(turn.index, "tool_raw", call.raw, call_id=call.id)],
                        detail=f"call {call.id}: {reason}",
                    )
                )
    return out


def _call_format_problem(call: ToolCallRecord, offered: set[str], cfg: PatternConfig) -> str | None:
    if call.arguments is None:
        return "arguments did not parse as JSON"
    if call.error_type in cfg.format_error_types:
        return f"schema violation ({call.error_type})"
    if offered and call.name not in offered:
        return f"tool {call.name!r} is not among the offered tools {sorted(offered)}"
    return None


def _long_response(traj: Trajectory, turns: TurnArrays, cfg: PatternConfig, g: float | None) -> list[PatternFinding]:
    out = []
    k = len(traj.turns)
    if k < 2:
        return out
    final_context = float(turns.prompt_tokens[-1] + turns.completion_tokens[-1])
    for i in range(k - 1):
        if not traj.turns[i].tool_calls:
            continue
        tool_tokens = float(turns.new_tokens[i + 1])
        share = tool_tokens / final_context if final_context else 0.0
        if tool_tokens < cfg.long_response_min_tokens or share < cfg.long_response_min_share:
            continue
        later_decode = float(turns.completion_tokens[i + 1 :].sum())
        later_turns = k - i - 1
        decode_pte = (g or 0.0) * tool_tokens * later_decode
        figures = {
            "tool_tokens": tool_tokens,
            "share": share,
            "later_turns": float(later_turns),
            "decode_pte": decode_pte,
            # Under evict_all the result is re-prefilled at every later turn, on top of the decode reads.
            "extra_pte_evict_all": tool_tokens * later_turns + decode_pte,
        }
        call = max(traj.turns[i].tool_calls, key=lambda c: len(c.result))
        out.append(
            PatternFinding(
                pattern=Pattern.LONG_TOOL_RESPONSE,
                trajectory_id=traj.id,
                turns=list(range(i, k)),
                spans=[_whole_span(i, "tool_result", call.result, call_id=call.id)],
                detail=f"tool result after turn {i}: {tool_tokens:.0f} tokens = {share:.0%} of the final "
                f"context, "
                f"carried through {later_turns} later turn(s)" + (f", decode cost +{decode_pte:.1f} PTE" if g else ""),
                figures=figures,
            )
        )
    return out


def _recompute(traj: Trajectory, turns: TurnArrays) -> list[PatternFinding]:
    out = []
    derived = turns.recomputed_tokens()
    for i in range(1, len(traj.turns)):
        turn = traj.turns[i]
        recomputed = turn.cache.recomputed_tokens or int(derived[i])
        if recomputed <= 0:
            continue
        prev = traj.turns[i - 1]
        out.append(
            PatternFinding(
                pattern=Pattern.RECOMPUTE_AFTER_PAUSE,
                trajectory_id=traj.id,
                turns=[i - 1, i],
                detail=f"turn {i} re-prefilled {recomputed} tokens after a "
                f"{prev.timings.pause_s:.2f} s pause "
                f"(retention {prev.retention.policy}/{prev.retention.decision.value})",
                figures={
                    "recomputed_tokens": float(recomputed),
                    "pause_s": prev.timings.pause_s,
                    "extra_pte": float(recomputed),
                },
            )
        )
    return out


def _redundant(traj: Trajectory) -> list[PatternFinding]:
    seen: dict[tuple[str, str], list[tuple[int, ToolCallRecord]]] = {}
    for turn in traj.turns:
        for call in turn.tool_calls:
            if call.arguments is None:
                continue
            key = (call.name, json.dumps(call.arguments, sort_keys=True, default=str))
            seen.setdefault(key, []).append((turn.index, call))
    out = []
    for (name, args), calls in seen.items():
        if len(calls) < 2:
            continue
        out.append(
            PatternFinding(
                pattern=Pattern.REDUNDANT_TOOL_CALL,
                trajectory_id=traj.id,
                turns=sorted({t for t, _ in calls}),
                spans=[_whole_span(t, "tool_raw", c.raw, call_id=c.id) for t, c in calls],
                detail=f"{name}({args}) called {len(calls)} times (calls {', '.join(c.id for _, c in calls)})",
                figures={"repeats": float(len(calls) - 1)},
            )
        )
    return out


def detect_patterns(
    traj: Trajectory, *, config: PatternConfig | None = None, gamma: float | None = None
) -> list[PatternFinding]:
    """Every finding in one trajectory. ``gamma`` (``interleaf.telemetry.gamma``) lets the long-response
    detector price the decode cost a long result causes; without it that figure is 0."""
    cfg = config or PatternConfig()
    turns = TurnArrays.from_trajectories([traj])
    return [
        *_confirmatory(traj, cfg),
        *_tool_mixing(traj),
        *_lack_of_priors(traj, cfg),
        *_format_collapse(traj, cfg),
        *_long_response(traj, turns, cfg, gamma),
        *_recompute(traj, turns),
        *_redundant(traj),
    ]


class PatternStats(BaseModel):
    """How often a pattern occurs in a set of trajectories and what it costs."""

    pattern: Pattern
    """Which pattern."""
    trajectories: int
    """Trajectories examined."""
    with_pattern: int
    """Trajectories with at least one finding."""
    findings: int
    """Total findings."""
    frequency: float
    """``with_pattern / trajectories``."""
    mean_pte_with: float | None = None
    """Mean PTE of trajectories with the pattern (None when none has it)."""
    mean_pte_without: float | None = None
    """Mean PTE of the baseline trajectories (None when there are none)."""
    cost_multiplier: float | None = None
    """``mean_pte_with / mean_pte_without``; None when either side is empty."""


def pattern_stats(
    findings: Sequence[Sequence[PatternFinding]],
    pte_values: Sequence[float] | np.ndarray,
    *,
    baseline: str = "without_pattern",
) -> list[PatternStats]:
    """Job-level frequency and cost multiplier per pattern.

    ``findings[k]`` and ``pte_values[k]`` belong to trajectory k. ``baseline``: ``without_pattern``
    (trajectories free of *this* pattern, the paper's per-pattern comparison) or ``pattern_free``
    (trajectories free of all four paper patterns).
    """
    if baseline not in ("without_pattern", "pattern_free"):
        raise ValueError(f"baseline={baseline!r} is not known; use 'without_pattern' or 'pattern_free'")
    values = np.asarray(pte_values, dtype=np.float64)
    if len(values) != len(findings):
        raise ValueError(f"pte_values has {len(values)} entries but findings has {len(findings)}")
    n = len(findings)
    present = {p: np.array([any(f.pattern == p for f in fs) for fs in findings], dtype=bool) for p in Pattern}
    clean = ~np.any([present[p] for p in PAPER_PATTERNS], axis=0) if n else np.zeros(0, dtype=bool)
    out = []
    for p in Pattern:
        has = present[p]
        base = ~has if baseline == "without_pattern" else clean & ~has
        with_mean = float(values[has].mean()) if has.any() else None
        base_mean = float(values[base].mean()) if base.any() else None
        out.append(
            PatternStats(
                pattern=p,
                trajectories=n,
                with_pattern=int(has.sum()),
                findings=sum(1 for fs in findings for f in fs if f.pattern == p),
                frequency=float(has.mean()) if n else 0.0,
                mean_pte_with=with_mean,
                mean_pte_without=base_mean,
                cost_multiplier=with_mean / base_mean if with_mean is not None and base_mean else None,
            )
        )
    return out


__all__ = [
    "PAPER_PATTERNS",
    "Pattern",
    "PatternConfig",
    "PatternFinding",
    "PatternStats",
    "TextSpan",
    "detect_patterns",
    "final_answer",
    "pattern_stats",
]
