"""What an agent needs from an inference backend, and nothing more.

Agents do not import the runtime (dependency direction: runtime -> agents -> tools). The runtime
hands each episode an object satisfying :class:`AgentModel`; it owns the token-exact
conversation, the streaming session, retention and routing. The agent renders *deltas* of text in
its turn format and never re-renders history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from interleaf.telemetry.records import CacheFigures, RetentionRecord, TurnTimings


@dataclass(frozen=True)
class Constraint:
    """A decoding constraint, passed to the engine as SGLang's sampling_params field of that name."""

    kind: str
    """One of ``json_schema`` (a JSON string), ``regex`` or ``ebnf``."""
    value: str
    """The schema / pattern / grammar text."""

    def __post_init__(self) -> None:
        if self.kind not in ("json_schema", "regex", "ebnf"):
            raise ValueError(f"Constraint.kind must be json_schema, regex or ebnf, got {self.kind!r}")


@dataclass
class Completion:
    """One finished LLM call, with the exact tokens and what it cost."""

    text: str
    delta_ids: list[int]
    """Token ids sent as this turn's delta (the tokenised ``delta_text``)."""
    output_ids: list[int]
    """Generated ids, including the stop token when one ended generation."""
    finish_reason: str
    request_id: str = ""
    server: str = ""
    cache: CacheFigures = field(default_factory=CacheFigures)
    timings: TurnTimings = field(default_factory=TurnTimings)
    hidden_states: list | None = None
    retention: list[RetentionRecord] = field(default_factory=list)
    """What happened to the KV before this call (a hold released during the preceding pause by TTL,
    budget or admission control, a wait for admission, a refused session, a failover)."""
    """Captured hidden states when requested (engine-specific nesting: [layer][position][dim])."""


@runtime_checkable
class AgentModel(Protocol):
    """One episode's handle on the model. Implemented by ``interleaf.runtime`` (and by scripted fakes)."""

    model_name: str

    async def generate(
        self,
        delta_text: str,
        *,
        max_new_tokens: int,
        constraint: Constraint | None = None,
        stop: list[str] | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        """Append ``delta_text`` (tokenised once, never re-rendered) to the conversation and generate."""
        ...

    async def pause(self, tool_names: list[str]) -> RetentionRecord:
        """The agent is about to run these tools: apply the retention policy (hold or release KV)."""
        ...

    async def close(self) -> None:
        """The episode is over: release everything held on the server. Idempotent."""
        ...

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` under the model's tokenizer (for budgets and output caps)."""
        ...
