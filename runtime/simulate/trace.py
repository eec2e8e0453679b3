"""Workloads as data: the Mooncake trace JSONL, extended with agent sessions, turns and tool pauses.

One JSON object per line, one line per request (gzip-compressed or not: told by the content). Mooncake's
fields (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``: ids of 512-token blocks, equal
ids = equal content, so a shared prefix is a shared id) plus interleaf's: ``session_id`` and ``turn`` (an
agent's requests, in order), ``tool_pause_s`` (the tool time before this turn: the agent waits that long
after the previous turn's answer) and ``tool``. AIPerf's ``aiperf synthesize`` writes the same shape
(``session_id``, ``input_length`` = the turn's new tokens, ``delay`` ms before a later turn, ``group_id``);
both read here.

In a session, ``input_length`` is the turn's *new* tokens (tool output, user message): the context is
everything before it plus the model's outputs, which is how an agent's conversation grows. A line with
no ``session_id`` is a one-turn session of its own (plain Mooncake). A session that numbers its turns
numbers them 0, 1, 2, … (no repeats, no gaps); one that does not is in file order.

``load_trace`` also reads interleaf's own trajectory file (``trajectories.jsonl``, a recorded job):
``trace_from_trajectories``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.trajectory_file import load_trajectories

BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in Mooncake's and AIPerf's traces."""
MAX_LENGTH = 1 << 30
"""Most tokens a line's ``input_length`` or ``output_length`` may have: far past any model's window (the
simulation cuts sessions at the window, ``fit_context``); a larger figure is a corrupt line."""
MAX_BLOCK_TOKENS = 1 << 17
"""Most tokens a ``hash_ids`` block may have: a model's whole window (131,072). The replay writes each block's
content out in full, so a larger block is memory spent on content no request can hold."""
_GZIP_MAGIC = b"\x1f\x8b"


def _no_bool(value: Any) -> Any:
    # JSON's true/false would pass as the numbers 1/0 (pydantic reads a bool as an int or a float).
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true/false")
    return value


Count = Annotated[int, BeforeValidator(_no_bool)]
Number = Annotated[float, BeforeValidator(_no_bool)]


class TraceError(ValueError):
    """A trace file cannot be read; the message names the file, the line and the field."""


class TraceTurn(BaseModel):
    """One request of a trace (one JSONL line)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    timestamp: Number | None = None
    """Arrival time, milliseconds from the trace's start (Mooncake). For a session only the first
    turn's matters: later turns follow the previous answer after ``tool_pause_s``."""
    input_length: Count = Field(ge=0, le=MAX_LENGTH)
    """New input tokens of this turn (the whole prompt for a line without ``session_id``)."""
    output_length: Count = Field(ge=1, le=MAX_LENGTH)
    """Tokens the model generates for this turn."""
    hash_ids: list[int] = Field(default_factory=list)
    """Ids of the input's ``block_tokens``-token blocks, in order; equal ids have equal content (shared
    prefixes). Blocks beyond the list, or all of them when it is empty, are unique to this turn."""
    session_id: str | None = None
    """The agent (conversation) this turn belongs to; None = a one-turn session."""
    turn: Count | None = Field(default=None, ge=0)
    """Position in the session (0-based); None = file order."""
    tool_pause_s: Number | None = Field(default=None, ge=0)
    """Seconds of tool time between the previous turn's answer and this turn (interleaf)."""
    delay: Number | None = Field(default=None, ge=0)
    """AIPerf's inter-turn delay, milliseconds (used when ``tool_pause_s`` is absent)."""
    tool: str = "tool"
    """Name of the tool that ran in the pause (retention policies learn durations per tool)."""
    block_tokens: Count = Field(default=BLOCK_TOKENS, ge=1, le=MAX_BLOCK_TOKENS)
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
    """Read a trace JSONL file, plain or gzip-compressed; an interleaf trajectory file is read as
    ``trace_from_trajectories`` does. ``TraceError`` naming the file, the line number and the field of a
    bad line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror or exc})") from exc
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceError(f"{path}: the gzip stream is corrupt or truncated ({exc or type(exc).__name__})") from exc
    lines = []
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TraceError(
                f"{path}:{number}: byte {raw[exc.start]:#04x} at column {exc.start + 1} is not UTF-8; a trace is "
                "UTF-8 JSON Lines (gzip-compressed or not)"
            ) from exc
    if _is_trajectory_file(lines):
        try:
            return trace_from_trajectories(path)
        except ValueError as exc:
            raise TraceError(str(exc)) from exc
    return parse_trace(lines, source=str(path))


def _is_trajectory_file(lines: list[str]) -> bool:
    """Whether the first record is an interleaf ``Trajectory`` (``id`` and ``turns``) rather than a request."""
    first = next((line for line in lines if line.strip()), "")
    try:
        data = json.loads(first)
    except (ValueError, RecursionError):  # parse_trace names the line
        return False
    return (
        isinstance(data, dict) and isinstance(data.get("turns"), list) and "id" in data and "input_length" not in data
    )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problems(exc: ValidationError, limit: int = 3) -> str:
    """pydantic's errors in one short line: ``field: what is wrong (got value)``, values cut to 60 characters."""
    parts = []
    for e in exc.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "line"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" + ("" if e["type"] == "missing" else f" (got {_short(e.get('input'))})"))
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_trace(lines: Iterable[str], *, source: str = "<trace>") -> list[TraceTurn]:
    """Parse trace lines (blank lines skipped); ``TraceError`` naming ``source:line`` and the field, or the
    session and turn of a session whose turn numbers repeat or leave a gap."""
    out: list[TraceTurn] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{source}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        except (ValueError, RecursionError) as exc:  # a number of over 4,300 digits; nesting too deep
            why = str(exc) if len(str(exc)) <= 80 else str(exc)[:77] + "..."
            raise TraceError(f"{source}:{number}: not a trace line ({why})") from exc
        if not isinstance(data, dict):
            raise TraceError(f"{source}:{number}: expected a JSON object, got {type(data).__name__}")
        try:
            out.append(TraceTurn.model_validate(data))
        except ValidationError as exc:
            raise TraceError(f"{source}:{number}: {_problems(exc)}") from exc
        numbers.append(number)
    if not out:
        raise TraceError(f"{source}: the trace has no requests")
    _check_turns(out, lambda i: f"{source}:{numbers[i]}")
    return out


def _check_turns(turns: list[TraceTurn], where: Callable[[int], str] = lambda i: f"turns[{i}]") -> None:
    """``TraceError`` at ``where(i)`` (the ``i``-th turn's place: ``file:line``) when a session numbers its
    turns other than 0, 1, 2, … (a repeat, a gap) or numbers some of its turns and not others."""
    by_id: dict[str, dict[int | None, int]] = {}
    for i, t in enumerate(turns):
        if t.session_id is None:
            continue
        seen = by_id.setdefault(t.session_id, {})
        if seen and (t.turn is None) != (None in seen):
            raise TraceError(f"{where(i)}: session {_short(t.session_id)} numbers some of its turns and not others "
                             "(this line's turn and an earlier one's); number them all 0, 1, 2, … or none "
                             "(file order)")  # fmt: skip
        if t.turn is not None and t.turn in seen:
            raise TraceError(f"{where(i)}: session {_short(t.session_id)} repeats turn {t.turn} (first at "
                             f"{where(seen[t.turn])}); a session's turns are numbered 0, 1, 2, …")  # fmt: skip
        seen[t.turn] = i
    for sid, seen in by_id.items():
        if None in seen:
            continue
        present = sorted(n for n in seen if n is not None)
        missing = next((n for n, have in enumerate(present) if n != have), None)
        if missing is not None:
            after = min(n for n in present if n > missing)
            raise TraceError(f"{where(seen[after])}: session {_short(sid)} has turn {after} but no turn {missing}; "
                             "a session's turns are numbered 0, 1, 2, … without gaps")  # fmt: skip


def dump_trace(turns: Iterable[TraceTurn], path: str | Path) -> None:
    """Write a trace JSONL file (fields left at their defaults are omitted)."""
    with open(path, "w") as f:
        for t in turns:
            f.write(t.model_dump_json(exclude_defaults=True) + "\n")


def sessions(turns: list[TraceTurn]) -> list[SessionScript]:
    """Group a trace's lines into sessions (by ``session_id``, turns ordered by ``turn`` or in file order),
    started at their first turn's ``timestamp`` (relative to the earliest). A line without ``session_id``
    is a session named ``line-<index>``, made unique against the trace's own ids."""
    _check_turns(turns)
    taken = {t.session_id for t in turns if t.session_id is not None}
    by_id: dict[str, list[TraceTurn]] = {}
    for i, t in enumerate(turns):
        sid = t.session_id
        if sid is None:
            sid = f"line-{i}"
            while sid in taken:  # an explicit id spelled like a synthetic one: the synthetic one gives way
                sid = "_" + sid
            taken.add(sid)
        by_id.setdefault(sid, []).append(t)
    stamps = [t.timestamp for t in turns if t.timestamp is not None]
    origin = min(stamps) if stamps else 0.0
    out = []
    for sid, group in by_id.items():
        ordered = sorted(group, key=lambda t: t.turn or 0) if group[0].turn is not None else group
        first = ordered[0].timestamp
        out.append(SessionScript(sid, (first - origin) / 1000.0 if first is not None else 0.0, ordered))
    out.sort(key=lambda s: s.start_s)
    return out


def fit_context(scripts: list[SessionScript], limit: int) -> tuple[list[SessionScript], int]:
    """Each session cut before the first turn whose prompt plus output would pass ``limit`` tokens (the
    model's context: the engine would refuse that request; a real agent would have compacted its context
    or stopped). In real tokens, whatever token block the simulation then runs (the simulated engine's own
    window, in simulated tokens, then never binds): the same turns are cut at every block. Returns the
    sessions (a session with nothing left is dropped) and the turns cut."""
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
    "MAX_BLOCK_TOKENS",
    "MAX_LENGTH",
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
