"""The four rules of arXiv 2604.05404 App. E (../shared/PAPERS.md §B), each returning its findings."""

from __future__ import annotations

import re

from interleaf.telemetry.patterns.answers import AnswerMatcher, answer_tag_spans, final_answer, normalise_answer
from interleaf.telemetry.patterns.config import PatternConfig, ToolType
from interleaf.telemetry.patterns.findings import Pattern, PatternFinding, TextSpan, whole_span
from interleaf.telemetry.patterns.python_output import PythonOutput
from interleaf.telemetry.records import ToolCallRecord, Trajectory

_CALL_BLOCK = re.compile(r"<tool_call>.*?(</tool_call>|$)", re.S)


def confirmatory(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    """PAPERS.md §B.1: the answer, as a whole token or number, appears in the reasoning before the
    python tool is invoked (to verify it). What the call printed does not matter, so ``print(6*7 == 42)``
    after "the answer is 42" counts; ``PatternConfig.confirmatory_needs_output`` [ours] also asks the
    call's stdout to contain the answer. Text inside tool-call markup and ``<answer>`` tags is not
    reasoning; a malformed call was never invoked (format collapse)."""
    answer = final_answer(traj)
    matcher = AnswerMatcher(normalise_answer(answer or ""))
    if not matcher.answer:
        return []
    offered = set(traj.tools)
    stated: list[TextSpan] = []
    for turn in traj.turns:
        first_call = turn.text.find("<tool_call>")
        masked = [(m.start(), m.end()) for m in _CALL_BLOCK.finditer(turn.text)] + answer_tag_spans(turn.text)
        spans = [
            TextSpan(turn=turn.index, source="text", start=s, end=e, excerpt=turn.text[s:e])
            for s, e in matcher.find(turn.text)
            if not any(ms <= s < me for ms, me in masked)
        ]
        evidence = stated + [s for s in spans if first_call < 0 or s.start < first_call]
        for call in turn.tool_calls:
            if not evidence or not cfg.is_python(call.name) or call_format_problem(call, offered, cfg):
                continue
            if cfg.confirmatory_needs_output and not matcher.find(PythonOutput.parse(call.result).stdout):
                continue
            first = evidence[0]
            return [
                PatternFinding(
                    pattern=Pattern.CONFIRMATORY_TOOL_USAGE,
                    trajectory_id=traj.id,
                    turns=sorted({s.turn for s in evidence} | {turn.index}),
                    spans=[
                        first,
                        whole_span(turn.index, "tool_raw", call.raw, call_id=call.id),
                        whole_span(turn.index, "tool_result", call.result, call_id=call.id),
                    ],
                    detail=f"answer {matcher.answer!r} stated in turn {first.turn} before the python call "
                    f"{call.id} in turn {turn.index}"
                    + (", whose output confirms it" if cfg.confirmatory_needs_output else ""),
                )
            ]
        stated += spans
    return []


def tool_mixing(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    """More than one tool *type* among the offered tools the trajectory called (the answer channel
    and calls to tools that were not offered do not count: the latter are format collapse)."""
    offered = set(traj.tools)
    first: dict[str, tuple[int, str]] = {}
    for turn in traj.turns:
        for call in turn.tool_calls:
            if (offered and call.name not in offered) or call.arguments is None:
                continue
            kind = cfg.tool_type(call.name)
            if kind != ToolType.ANSWER:
                first.setdefault(kind, (turn.index, call.name))
    if len(first) < 2:
        return []
    return [
        PatternFinding(
            pattern=Pattern.TOOL_MIXING,
            trajectory_id=traj.id,
            turns=sorted({t for t, _ in first.values()}),
            detail="tool types used: "
            + ", ".join(f"{kind} ({name}, first in turn {t})" for kind, (t, name) in first.items()),
            figures={"distinct_tool_types": float(len(first))},
        )
    ]


def lack_of_priors(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    """A python call that printed nothing (missing print) or did not compile (bad syntax). Warnings on
    stderr and runtime exceptions of code that compiled are not a missing prior."""
    out = []
    offered = set(traj.tools)
    for turn in traj.turns:
        for call in turn.tool_calls:
            # A malformed call never executed: that is format collapse, not a missing prior.
            if not cfg.is_python(call.name) or call_format_problem(call, offered, cfg):
                continue
            run = PythonOutput.parse(call.result)
            if run.syntax_error:
                kind = f"code did not compile ({run.exception})"
            elif run.empty:
                kind = "empty output (missing print?)"
            else:
                continue
            out.append(
                PatternFinding(
                    pattern=Pattern.LACK_OF_TOOL_PRIORS,
                    trajectory_id=traj.id,
                    turns=[turn.index],
                    spans=[whole_span(turn.index, "tool_result", call.result, call_id=call.id)],
                    detail=f"{call.name} call {call.id}: {kind}",
                )
            )
    return out


def format_collapse(traj: Trajectory, cfg: PatternConfig) -> list[PatternFinding]:
    """A tool call that did not parse, violated its schema, or named a tool that was not offered."""
    out = []
    offered = set(traj.tools)
    for turn in traj.turns:
        if turn.format_error:
            out.append(
                PatternFinding(
                    pattern=Pattern.TOOL_FORMAT_COLLAPSE,
                    trajectory_id=traj.id,
                    turns=[turn.index],
                    spans=[whole_span(turn.index, "format_error", turn.format_error)],
                    detail=f"turn {turn.index}: unparseable tool call: {turn.format_error}",
                )
            )
        for call in turn.tool_calls:
            reason = call_format_problem(call, offered, cfg)
            if reason:
                out.append(
                    PatternFinding(
                        pattern=Pattern.TOOL_FORMAT_COLLAPSE,
                        trajectory_id=traj.id,
                        turns=[turn.index],
                        spans=[whole_span(turn.index, "tool_raw", call.raw, call_id=call.id)],
                        detail=f"call {call.id}: {reason}",
                    )
                )
    return out


def call_format_problem(call: ToolCallRecord, offered: set[str], cfg: PatternConfig) -> str | None:
    """Why a call is malformed, or None."""
    if call.arguments is None:
        return "arguments did not parse as JSON"
    if call.error_type in cfg.format_error_types:
        return f"schema violation ({call.error_type})"
    if offered and call.name not in offered:
        return f"tool {call.name!r} is not among the offered tools {sorted(offered)}"
    return None


__all__ = ["call_format_problem", "confirmatory", "format_collapse", "lack_of_priors", "tool_mixing"]
