"""Workloads as data: the Mooncake trace JSONL, extended with agent sessions, turns and tool pauses.

One JSON object per line, one line per request. Mooncake's fields (``timestamp`` ms, ``input_length``,
``output_length``, ``hash_ids``: ids of 512-token blocks, equal ids = equal content, so a shared prefix
is a shared id) plus interleaf's: ``session_id`` and ``turn`` (an agent's requests, in order),
``tool_pause_s`` (the tool time before this turn: the agent waits that long after the previous turn's
answer) and ``tool``. AIPerf's ``aiperf synthesize`` writes the same shape (``session_id``,
``input_length`` = the turn's new tokens, ``delay`` ms before a later turn, ``group_id``); both read here.

In a session, ``input_length`` is the turn's *new* tokens (tool output, user message): the context is
everything before it plus the model's outputs, which is how an agent's conversation grows. A line with
no ``session_id`` is a one-turn session of its own (plain Mooncake).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.trajectory_file import load_trajectories

BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in Mooncake's and AIPerf's traces."""


class TraceError(ValueError):
    """A trace file cannot be read; the message names the file, the line and the field."""


class TraceTurn(BaseModel):
    """One request of a trace (one JSONL line)."""

    model_config = ConfigDict(extra="ignore")

    timestamp: float | None = None
    """Arrival time, milliseconds from the trace's start (Mooncake). For a session only the first
    turn's matters: later turns follow the previous answer after ``tool_pause_s``."""
    input_length: int = Field(ge=0)
    """New input tokens of this turn (the whole prompt for a line without ``session_id``)."""
    output_length: int = Field(ge=1)
    """Tokens the model generates for this turn."""
    hash_ids: list[int] = Field(default_factory=list)
    """Ids of the input's ``block_tokens``-token blocks, in order; equal ids have equal content (shared
    prefixes). Blocks beyond the list, or all of them when it is empty, are unique to this turn."""
    session_id: str | None = None
    """The agent (conversation) this turn belongs to; None = a one-turn session."""
    turn: int | None = Field(default=None, ge=0)
    """Position in the session (0-based); None = file order."""
    tool_pause_s: float | None = Field(default=None, ge=0)
    """Seconds of tool time between the previous turn's answer and this turn (interleaf)."""
    delay: float | None = Field(default=None, ge=0)
    """AIPerf's inter-turn delay, milliseconds (used when ``tool_pause_s`` is absent)."""
    tool: str = "tool"
    """Name of the tool that ran in the pause (retention policies learn durations per tool)."""
    block_tokens: int = Field(default=BLOCK_TOKENS, ge=1)
    """Tokens per ``hash_ids`` block (interleaf; Mooncake and AIPerf use 512)."""
    group_id: int | str | None = None
    """AIPerf's group of sessions (kept, not used)."""

    @model_validator(mode="after")
    def _pause_from_delay(self) -> TraceTurn:
        if self.tool_pause_s is None and self.delay is not None:
            self.tool_pause_s = self.delay / 1000.0
        return self


@dataclass
class SessionScript:
    """One agent's turns, ready to replay."""

    session_id: str
    start_s: float
    """When the first turn is sent (seconds from the start)."""
    turns: list[TraceTurn] = field(default_factory=list)

    @property
    def peak_context(self) -> int:
        """Context after the last turn: every input and output token."""
        return sum(t.input_length + t.output_length for t in self.turns)

    @property
    def tool_time_s(self) -> float:
        """Summed tool pauses (a floor on the session's completion time)."""
        return sum(t.tool_pause_s or 0.0 for t in self.turns[1:])


def load_trace(path: str | Path) -> list[TraceTurn]:
    """Read a trace JSONL file; ``TraceError`` naming the line number and field of a bad line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc})") from exc
    return parse_trace(text.splitlines(), source=str(path))


def parse_trace(lines: Iterable[str], *, source: str = "<trace>") -> list[TraceTurn]:
    """Parse trace lines (blank lines skipped); ``TraceError`` naming ``source:line`` and the field."""
    out: list[TraceTurn] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{source}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(data, dict):
            raise TraceError(f"{source}:{number}: expected a JSON object, got {type(data).__name__}")
        try:
            out.append(TraceTurn.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise TraceError(f"{source}:{number}: {problems}") from exc
    if not out:
        raise TraceError(f"{source}: the trace has no requests")
    return out


def dump_trace(turns: Iterable[TraceTurn], path: str | Path) -> None:
    """Write a trace JSONL file (fields left at their defaults are omitted)."""
    with open(path, "w") as f:
        for t in turns:
            f.write(t.model_dump_json(exclude_defaults=True) + "\n")


def sessions(turns: list[TraceTurn]) -> list[SessionScript]:
    """Group a trace's lines into sessions (by ``session_id``, turns ordered by ``turn`` then file order),
    started at their first turn's ``timestamp`` (relative to the earliest)."""
    by_id: dict[str, list[TraceTurn]] = {}
    for i, t in enumerate(turns):
        by_id.setdefault(t.session_id if t.session_id is not None else f"line-{i}", []).append(t)
    stamps = [t.timestamp for t in turns if t.timestamp is not None]
    origin = min(stamps) if stamps else 0.0
    out = []
    for sid, group in by_id.items():
        ordered = (
            sorted(group, key=lambda t: t.turn if t.turn is not None else 0)
            if all(t.turn is not None for t in group)
            else group
        )
        first = ordered[0].timestamp
        out.append(SessionScript(sid, (first - origin) / 1000.0 if first is not None else 0.0, ordered))
    out.sort(key=lambda s: s.start_s)
    return out


def fit_context(scripts: list[SessionScript], limit: int) -> tuple[list[SessionScript], int]:
    """Each session cut before the first turn whose prompt plus output would pass ``limit`` tokens (the
    model's context: the engine would refuse that request; a real agent would have compacted its context
    or stopped). Returns the sessions (a session with nothing left is dropped) and the turns cut."""
    out, cut = [], 0
    for script in scripts:
        context, keep = 0, 0
        for turn in script.turns:
            if context + turn.input_length + turn.output_length > limit:
                break
            context += turn.input_length + turn.output_length
            keep += 1
        cut += len(script.turns) - keep
        if keep:
            out.append(script if keep == len(script.turns) else replace(script, turns=script.turns[:keep]))
    return out, cut


def trace_from_trajectories(source: str | Path) -> list[TraceTurn]:
    """Replay recorded jobs: interleaf trajectories (``trajectories.jsonl``) as a trace, one session per
    trajectory, each turn's new tokens, output tokens and measured pause as recorded."""
    return [t for traj in load_trajectories(source) for t in _trajectory_turns(traj)]


def _trajectory_turns(traj: Trajectory) -> list[TraceTurn]:
    out = []
    for i, turn in enumerate(traj.turns):
        # The pause before turn i ran the tools that turn i-1 called.
        tools = [c.name for c in traj.turns[i - 1].tool_calls] if i else []
        out.append(
            TraceTurn(
                timestamp=traj.started_at * 1000.0 if turn.index == 0 else None,
                input_length=len(turn.delta_ids),
                output_length=max(1, len(turn.completion_ids)),
                session_id=traj.id,
                turn=turn.index,
                tool_pause_s=turn.timings.pause_s if turn.index else None,
                tool=",".join(tools) or "tool",
            )
        )
    return out


__all__ = [
    "BLOCK_TOKENS",
    "SessionScript",
    "TraceError",
    "TraceTurn",
    "dump_trace",
    "fit_context",
    "load_trace",
    "parse_trace",
    "sessions",
    "trace_from_trajectories",
]
