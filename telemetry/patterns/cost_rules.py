"""interleaf's own cost rules ([ours], docs/telemetry.md): long tool responses, recompute after a pause,
redundant identical calls."""

from __future__ import annotations

import json

from interleaf.telemetry.patterns.config import PatternConfig
from interleaf.telemetry.patterns.findings import Pattern, PatternFinding, whole_span
from interleaf.telemetry.pte import TurnArrays
from interleaf.telemetry.records import ToolCallRecord, Trajectory


def long_response(traj: Trajectory, turns: TurnArrays, cfg: PatternConfig, g: float | None) -> list[PatternFinding]:
    """A tool result that is a large share of the final context; ``g`` (γ) prices its decode cost."""
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
                spans=[whole_span(i, "tool_result", call.result, call_id=call.id)],
                detail=f"tool result after turn {i}: {tool_tokens:.0f} tokens = {share:.0%} of the final "
                f"context, "
                f"carried through {later_turns} later turn(s)" + (f", decode cost +{decode_pte:.1f} PTE" if g else ""),
                figures=figures,
            )
        )
    return out


def recompute(traj: Trajectory, turns: TurnArrays) -> list[PatternFinding]:
    """A turn that re-prefilled tokens an earlier call had computed (its KV was lost in the pause)."""
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


def redundant(traj: Trajectory) -> list[PatternFinding]:
    """The same tool called with identical arguments (key order ignored) more than once."""
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
                spans=[whole_span(t, "tool_raw", c.raw, call_id=c.id) for t, c in calls],
                detail=f"{name}({args}) called {len(calls)} times (calls {', '.join(c.id for _, c in calls)})",
                figures={"repeats": float(len(calls) - 1)},
            )
        )
    return out


__all__ = ["long_response", "recompute", "redundant"]
