"""A scripted ``AgentModel``: fixed completions, no server. For testing agents, graphs and scoring.

    from interleaf.tools import format_answer, format_tool_call

    model = ScriptedModel([format_tool_call("python", {"code": "print(6*7)"}), format_answer("42")])
    traj = await agent.run("What is 6*7?", model)

Tokens are one id per character (``ord``), plus ``eos_id`` after a turn that finished with
``stop``, so trajectories are token-exact in the model's own terms: ``model.sent_ids`` is what a
server would have seen, and equals the trajectory's reconstruction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from interleaf.agents.model import Completion, Constraint
from interleaf.telemetry.records import CacheFigures, RetentionDecision, RetentionRecord, TurnTimings


@dataclass
class ScriptedTurn:
    """One scripted completion."""

    text: str
    finish_reason: str = "stop"
    """``stop`` appends ``eos_id`` to the output ids; ``length`` does not."""
    delay_s: float = 0.0
    """Sleep this long before answering (cancellation and timeout tests)."""


@dataclass
class ScriptedCall:
    """What the agent asked for, as received."""

    delta_text: str
    max_new_tokens: int
    constraint: Constraint | None
    temperature: float


class ScriptExhausted(RuntimeError):
    """The agent asked for more turns than the script has."""


@dataclass
class ScriptedModel:
    """An ``AgentModel`` that replays ``script`` turn by turn (strings, ``ScriptedTurn`` or exceptions
    to raise)."""

    script: Sequence[str | ScriptedTurn | BaseException]
    model_name: str = "scripted"
    eos_id: int = 2
    retention: str = "session"
    """Retention policy reported by ``pause`` (``session`` holds, ``none`` releases)."""
    calls: list[ScriptedCall] = field(default_factory=list)
    sent_ids: list[int] = field(default_factory=list)
    """Every id the 'server' has seen: deltas and completions, in order."""
    pauses: list[list[str]] = field(default_factory=list)
    closed: bool = False
    close_count: int = 0

    def count_tokens(self, text: str) -> int:
        return len(text)

    def _encode(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    async def generate(
        self,
        delta_text: str,
        *,
        max_new_tokens: int,
        constraint: Constraint | None = None,
        stop: list[str] | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        if self.closed:
            raise RuntimeError("ScriptedModel.generate after close(): the episode's model was already closed")
        index = len(self.calls)
        self.calls.append(ScriptedCall(delta_text, max_new_tokens, constraint, temperature))
        if index >= len(self.script):
            raise ScriptExhausted(f"script has {len(self.script)} turns; the agent asked for turn {index + 1}")
        step = self.script[index]
        if isinstance(step, BaseException):
            raise step
        turn = step if isinstance(step, ScriptedTurn) else ScriptedTurn(step)
        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        delta_ids = self._encode(delta_text)
        cached = len(self.sent_ids)
        text, finish = turn.text, turn.finish_reason
        output_ids = self._encode(text) + ([self.eos_id] if finish == "stop" else [])
        if len(output_ids) > max_new_tokens:  # the stop token counts toward the cap, as in SGLang
            output_ids, finish = output_ids[:max_new_tokens], "length"
            text = "".join(chr(i) for i in output_ids)
        self.sent_ids += delta_ids + output_ids
        return Completion(
            text=text,
            delta_ids=delta_ids,
            output_ids=output_ids,
            finish_reason=finish,
            request_id=f"scripted-{index}",
            server="scripted://",
            cache=CacheFigures(
                prompt_tokens=cached + len(delta_ids),
                cached_tokens=cached,
                completion_tokens=len(output_ids),
            ),
            timings=TurnTimings(e2e_s=turn.delay_s),
        )

    async def pause(self, tool_names: list[str]) -> RetentionRecord:
        self.pauses.append(list(tool_names))
        hold = self.retention != "none"
        return RetentionRecord(
            policy=self.retention,
            decision=RetentionDecision.HOLD if hold else RetentionDecision.RELEASE,
            held_tokens=len(self.sent_ids) if hold else 0,
        )

    async def close(self) -> None:
        self.closed = True
        self.close_count += 1

    async def __aenter__(self) -> ScriptedModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass
class ScriptedModelFactory:
    """``factory(episode_id)`` -> a fresh ``ScriptedModel`` replaying ``script``; picklable, so it can
    stand in for the backend pool inside Ray actors (``JobRunner(model_factory=...)``)."""

    script: Sequence[str | ScriptedTurn | BaseException]
    model_name: str = "scripted"
    retention: str = "session"

    def __call__(self, episode_id: str) -> ScriptedModel:
        return ScriptedModel(list(self.script), model_name=self.model_name, retention=self.retention)


__all__ = ["ScriptExhausted", "ScriptedCall", "ScriptedModel", "ScriptedModelFactory", "ScriptedTurn"]
