"""Trajectory records: the token-exact account of what an agent did and what it cost.

Telemetry owns this schema; the runtime and the agents produce these records, telemetry computes
on them (PTE, patterns, reports) and never calls back. Everything here is persisted (Redis, JSONL),
so every field carries a docstring: the format documents itself.

Compactness: a turn stores only the token ids it *added* (``delta_ids``, then ``completion_ids``);
the full sequence the engine saw at turn *i* is the concatenation of all earlier deltas and
completions plus turn *i*'s delta (``Trajectory.prompt_ids(i)``). Storage is O(total tokens), never
O(turns²).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

SCHEMA_VERSION = 1
"""Version of the trajectory record format this interleaf writes and reads (``Trajectory.schema_version``).
Raised when a change would make older readers misread a record; a reader refuses records of a newer
version instead of silently dropping what it does not know."""

MAX_TOKENS = 2**31 - 1
"""Upper bound of every token count in a record. No context comes near 2³¹ tokens: a larger figure is
corrupt, and would overflow the int64 sums that PTE is computed with."""

_FINITE = ConfigDict(allow_inf_nan=False)
# Every float of a record is a measurement: NaN or ±inf is corruption (and JSON cannot carry them).


class TerminationReason(StrEnum):
    """Why an episode ended."""

    ANSWERED = "answered"
    """The agent gave a final answer."""
    MAX_TURNS = "max_turns"
    """The turn budget ran out."""
    MAX_TOKENS = "max_tokens"
    """The token budget (context or generated) ran out."""
    WALL_TIME = "wall_time"
    """The wall-clock budget ran out."""
    NO_ACTION = "no_action"
    """The model ended a turn with neither a tool call nor an answer."""
    TOOL_INFRA_ERROR = "tool_infra_error"
    """A tool failed for infrastructure reasons (not the model's fault); the episode cannot go on."""
    BACKEND_ERROR = "backend_error"
    """The inference backend failed and retries/failover were exhausted."""
    CANCELLED = "cancelled"
    """The job or episode was cancelled."""
    ERROR = "error"
    """An unexpected error; ``Trajectory.error`` says what."""


class RetentionDecision(StrEnum):
    """What the retention policy did with the conversation's KV cache at a tool pause."""

    HOLD = "hold"
    """The KV was kept pinned on the server through the pause (streaming session kept open)."""
    RELEASE = "release"
    """The KV was released at the pause; the server may evict it."""
    NONE = "none"
    """No pause followed this turn (final turn) or the policy is stateless."""
    DENIED = "denied"
    """The policy wanted to hold but the KV budget refused; released instead."""
    SUSPEND = "suspend"
    """Admission control suspended the episode: its KV was released so that the episodes admitted
    before it can finish holding theirs; its next turn waits to be readmitted."""
    QUEUED = "queued"
    """The turn waited for admission (room in the KV budget) before it ran; ``wait_s`` says how long."""
    UNSUPPORTED = "unsupported"
    """The policy needs a capability the server does not offer (streaming sessions); the episode ran
    stateless there. The record's ``policy`` is what ran (``none``), ``reason`` names the server, the
    capability and the server flag that enables it."""


class ToolCallRecord(BaseModel):
    """One tool call the model made and what came back."""

    model_config = _FINITE

    id: str
    """Call id, unique within the trajectory (``call_<turn>_<index>``)."""
    name: str
    """Tool name as the model wrote it (may be unknown to the registry)."""
    arguments: dict[str, Any] | None = None
    """Parsed arguments; None when the call did not parse."""
    raw: str = ""
    """The call's raw text between ``<tool_call>`` tags, exactly as generated."""
    result: str = ""
    """The text returned to the model (after output capping)."""
    is_error: bool = False
    """True when the result is an error the model was shown (tool error, bad arguments, timeout)."""
    error_type: str | None = None
    """Error class name when ``is_error`` (e.g. ``ToolError``, ``ToolArgumentError``, ``ToolTimeout``)."""
    truncated: bool = False
    """True when the output was cut to the tool's output cap."""
    duration_s: float = 0.0
    """Wall time the tool took, seconds."""


class TurnTimings(BaseModel):
    """Timings of one turn, seconds."""

    model_config = _FINITE

    queue_s: float = 0.0
    """Time the request waited in the engine's queue before its prefill started."""
    ttft_s: float = 0.0
    """Time to first token, from request sent to first token produced."""
    decode_s: float = 0.0
    """Time from first token to last token."""
    e2e_s: float = 0.0
    """End-to-end latency of the LLM call as the client measured it."""
    tool_s: float = 0.0
    """Total wall time of the tool calls that followed this turn."""
    pause_s: float = 0.0
    """Gap between this turn's completion and the next turn's request (tool time plus overhead)."""


class CacheFigures(BaseModel):
    """Token accounting of one LLM call, as the engine reported it."""

    model_config = _FINITE

    prompt_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    """Full context length of the call (all tokens the model attended to before generating); 0 when
    the engine reported no figures."""
    cached_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    """Prompt tokens whose KV was reused (session or radix prefix hit); at most ``prompt_tokens``."""
    recomputed_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    """Prompt tokens prefilled by this call that an earlier call of the same trajectory had
    already computed (lost to eviction or a released hold)."""
    completion_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    """Tokens generated."""
    batch_size: float = Field(1.0, ge=1.0)
    """Mean number of sequences the engine decoded together during this call (for ``pte_plus``); at
    least 1 (the call's own sequence), 1 when the engine did not report it."""

    @model_validator(mode="after")
    def _cached_within_prompt(self) -> CacheFigures:
        if self.cached_tokens > self.prompt_tokens:
            raise ValueError(
                f"cached_tokens={self.cached_tokens} exceeds prompt_tokens={self.prompt_tokens}: a call cannot "
                "reuse more tokens than it was sent"
            )
        return self


class RetentionRecord(BaseModel):
    """The retention policy's decision at the pause after a turn."""

    model_config = _FINITE

    policy: str = "none"
    """Policy name: none | session | ttl | adaptive."""
    decision: RetentionDecision = RetentionDecision.NONE
    """What was done with the KV."""
    reason: str = ""
    """Why, in words (e.g. ``recompute 1800 PTE > hold 240 PTE``)."""
    predicted_pause_s: float | None = None
    """The pause length the policy predicted, seconds."""
    held_tokens: int = Field(0, ge=0, le=MAX_TOKENS)
    """Tokens kept pinned through the pause (0 when released)."""
    wait_s: float = 0.0
    """Seconds the next turn waited for admission before it ran (``queued`` records)."""


class Turn(BaseModel):
    """One LLM call and the tool calls it triggered."""

    model_config = _FINITE

    index: int
    """0-based turn number."""
    delta_ids: list[int]
    """Token ids appended to the context before this call (turn 0: the whole initial prompt;
    later: end-of-turn, tool results and the next generation prompt). Never re-rendered."""
    completion_ids: list[int]
    """Token ids the engine generated, including the stop token when one ended the turn."""
    text: str = ""
    """Decoded completion text."""
    finish_reason: str = ""
    """Engine finish reason: stop | length | abort."""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    """Tool calls parsed from this turn, in order, with their results."""
    format_error: str | None = None
    """Set when the turn tried a tool call that did not parse (Tool Format Collapse evidence)."""
    timings: TurnTimings = Field(default_factory=TurnTimings)
    """Where the time went."""
    cache: CacheFigures = Field(default_factory=CacheFigures)
    """Token and cache accounting."""
    retention: RetentionRecord = Field(default_factory=RetentionRecord)
    """Retention decision at the pause after this turn."""
    retention_events: list[RetentionRecord] = Field(default_factory=list)
    """What happened to the KV before this call: a hold released during the preceding pause (TTL,
    budget preemption, admission control), a wait for admission (``queued``), a session the budget
    refused (``denied``), a failover."""
    server: str = ""
    """Base URL of the engine that served the call."""
    request_id: str = ""
    """Engine request id (``meta_info.id``)."""
    span_id: str | None = None
    """OpenTelemetry span id of the LLM call, hex."""


class Trajectory(BaseModel):
    """One episode: an agent working one task, turn by turn."""

    model_config = _FINITE

    id: str
    """Trajectory id; also the OTel ``gen_ai.conversation.id``."""
    job_id: str = ""
    """Job this episode belongs to ('' when run ad hoc)."""
    episode: int = 0
    """Episode index within the job; (job_id, episode) is the idempotency key."""
    attempt: int = 1
    """Attempt number; a retried episode replaces the earlier attempt's record."""
    task_id: str = ""
    """Task identifier within its suite."""
    suite: str = ""
    """Task suite name (arith, lookup, mixed, grid, or a user file)."""
    agent: str = ""
    """Agent name."""
    model: str = ""
    """Served model name."""
    question: str = ""
    """The task's question."""
    expected: str | None = None
    """The reference answer, when the suite has one."""
    answer: str | None = None
    """The agent's final answer text."""
    score: float | None = Field(None, ge=0.0, le=1.0)
    """Task score in [0, 1] (1 = correct)."""
    correct: bool | None = None
    """Whether the answer was judged correct."""
    termination: TerminationReason = TerminationReason.ERROR
    """Why the episode ended."""
    error: str | None = None
    """Error message when the episode ended abnormally."""
    retention_policy: str = "none"
    """Retention policy requested for the episode (the job's ``retention``); what the KV really got
    is ``retention_effective``."""
    tools: list[str] = Field(default_factory=list)
    """Names of the tools offered to the agent."""
    tool_calls_constrained: bool = False
    """True when every tool call was generated under a grammar built from the tools' JSON schemas
    (constrained decoding): calls always parse and fit their schema, so Tool Format Collapse is n/a."""
    turns: list[Turn] = Field(default_factory=list)
    """The turns, in order."""
    started_at: float = Field(0.0, ge=0.0)
    """Unix time the episode started (0 when unknown)."""
    ended_at: float = Field(0.0, ge=0.0)
    """Unix time the episode ended (0 when unknown)."""
    trace_id: str | None = None
    """OpenTelemetry trace id of the episode, hex (links the dashboard to trace viewers)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form extras (suite parameters, seeds, hardware profile)."""
    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    """Version of the record format (``SCHEMA_VERSION``) the writer used. Records written before the
    field existed read as version 1; a record of a newer version than this interleaf knows is refused
    (fields it does not know would be dropped silently). Fields unknown within a version are ignored."""

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} was written by a newer interleaf; this one reads versions up to "
                f"{SCHEMA_VERSION}: upgrade interleaf to read it"
            )
        return version

    def prompt_ids(self, turn: int) -> list[int]:
        """The exact token ids the engine was asked to continue at ``turn``."""
        ids: list[int] = []
        for t in self.turns[:turn]:
            ids += t.delta_ids
            ids += t.completion_ids
        ids += self.turns[turn].delta_ids
        return ids

    def token_ids(self) -> list[int]:
        """The whole conversation as token ids: every delta and completion in order."""
        ids: list[int] = []
        for t in self.turns:
            ids += t.delta_ids
            ids += t.completion_ids
        return ids

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retention_effective(self) -> str:
        """The retention policy the episode's KV really got: ``retention_policy``, or ``none`` when its
        server lacked what the policy needs (a retention record with decision ``unsupported`` names the
        server, the capability and the flag) and nothing was ever held. Derived from the turns, written
        with the record for its readers."""
        records = [r for t in self.turns for r in (t.retention, *t.retention_events)]
        if any(r.decision == RetentionDecision.UNSUPPORTED for r in records) and not any(
            r.decision == RetentionDecision.HOLD for r in records
        ):
            return "none"
        return self.retention_policy

    @property
    def wall_s(self) -> float:
        """Episode wall time, seconds."""
        return max(0.0, self.ended_at - self.started_at)

    @property
    def tool_call_count(self) -> int:
        """Number of tool calls across all turns."""
        return sum(len(t.tool_calls) for t in self.turns)

    @property
    def completion_tokens(self) -> int:
        """Tokens generated across all turns."""
        return sum(len(t.completion_ids) for t in self.turns)


__all__ = [
    "MAX_TOKENS",
    "SCHEMA_VERSION",
    "CacheFigures",
    "RetentionDecision",
    "RetentionRecord",
    "TerminationReason",
    "ToolCallRecord",
    "Trajectory",
    "Turn",
    "TurnTimings",
]
