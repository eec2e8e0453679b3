"""``spans_from_trajectory``: a recorded trajectory re-emitted as a trace after the fact, its span
times rebuilt from the measured timings."""

from __future__ import annotations

import time

from interleaf.telemetry.pte import PTEBreakdown
from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.tracing.episode_tracer import EpisodeTracer
from interleaf.telemetry.tracing.spans import server_attributes

_NS = 1_000_000_000


def spans_from_trajectory(
    traj: Trajectory,
    tracer: EpisodeTracer | None = None,
    *,
    pte: PTEBreakdown | None = None,
    turn_pte: list[float] | None = None,
) -> str | None:
    """Re-emit a stored trajectory as a trace after the fact; returns the new trace id (hex).

    Span times are rebuilt from the record: the episode starts at ``started_at`` (now when unset);
    each LLM call lasts ``timings.e2e_s`` (else ``ttft_s + decode_s``), its tool calls follow it
    back to back for their ``duration_s``, and the next call starts ``pause_s`` (at least the tool
    time) after the previous one ended. Exact for what was measured, approximate for gaps.
    """
    tracer = tracer or EpisodeTracer()
    t = traj.started_at or time.time()
    with tracer.episode_span(traj, start_time=int(t * _NS)) as agent:
        for turn in traj.turns:
            e2e = turn.timings.e2e_s or (turn.timings.ttft_s + turn.timings.decode_s)
            server = server_attributes(turn.server) if turn.server else {}
            with tracer.llm_span(
                traj.model or "model",
                conversation_id=traj.id,
                server_address=server.get("server.address"),
                server_port=server.get("server.port"),
                start_time=int(t * _NS),
                duration_s=e2e,
            ) as llm:
                llm.record(turn, pte=turn_pte[turn.index] if turn_pte else None)
                llm.record_retention(turn)
                llm.end_time = int((t + e2e) * _NS)
            tool_t = t + e2e
            for call in turn.tool_calls:
                tool_t = tracer.emit_tool_call(call, tool_t)
            t = max(t + e2e + turn.timings.pause_s, tool_t)
        agent.record(traj, pte)
        agent.end_time = int(max(t, traj.ended_at or t) * _NS)
        return agent.trace_id


__all__ = ["spans_from_trajectory"]
