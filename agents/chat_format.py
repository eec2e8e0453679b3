"""Rendering turn *deltas* in a chat template, and reading a turn's text back (DESIGN §5).

The conversation's token ids are append-only: turn 0 sends the rendered system + user messages
and the generation prompt; every later turn sends only what follows the previous completion (the
end-of-turn marker when the completion lacks one, the tool responses as a user message, and the
next generation prompt). History is never re-rendered, so the prefix the engine cached is always
a prefix of the next request.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatFormat:
    """A ChatML-style template (SmolLM2, Qwen): ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

    start: str = "<|im_start|>"
    end: str = "<|im_end|>"
    tool_role: str = "user"
    """Role that carries tool responses (hermes/Qwen put ``<tool_response>`` in a user message)."""

    def message(self, role: str, content: str) -> str:
        return f"{self.start}{role}\n{content}{self.end}\n"

    def generation_prompt(self) -> str:
        return f"{self.start}assistant\n"

    def initial(self, system: str, user: str) -> str:
        """Turn 0's delta: system and user messages, then the assistant generation prompt."""
        return self.message("system", system) + self.message("user", user) + self.generation_prompt()

    def close_turn(self, completion_finished: bool) -> str:
        """What closes the assistant's turn: the completion already ends with the end-of-turn
        token when the engine stopped on it; otherwise (length cut) the marker must be added."""
        return "\n" if completion_finished else self.end + "\n"

    def tool_responses(self, results: list[str], completion_finished: bool) -> str:
        """The delta after a tool-calling turn: tool responses as one message, then the next prompt."""
        body = "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in results)
        return self.close_turn(completion_finished) + self.message(self.tool_role, body) + self.generation_prompt()

    def user_feedback(self, text: str, completion_finished: bool) -> str:
        """The delta that tells the model something (e.g. a turn with no action) and asks again."""
        return self.close_turn(completion_finished) + self.message("user", text) + self.generation_prompt()


CHATML = ChatFormat()


@dataclass
class ParsedCall:
    """One ``<tool_call>`` block as written by the model."""

    raw: str
    name: str = ""
    arguments: dict[str, Any] | None = None
    error: str | None = None
    """Why the call did not parse (None when it did)."""


@dataclass
class ParsedTurn:
    """A completion split into reasoning, tool calls and final answer."""

    reasoning: str = ""
    calls: list[ParsedCall] = field(default_factory=list)
    answer: str | None = None

    @property
    def format_error(self) -> str | None:
        errors = [c.error for c in self.calls if c.error]
        return "; ".join(errors) if errors else None


_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


def _parse_call(raw: str) -> ParsedCall:
    call = ParsedCall(raw=raw)
    try:
        obj = json.loads(raw.strip())
    except json.JSONDecodeError as exc:
        call.error = f"tool call is not valid JSON ({exc.msg} at char {exc.pos})"
        return call
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        call.error = 'tool call must be a JSON object with a string "name"'
        return call
    call.name = obj["name"]
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        with contextlib.suppress(json.JSONDecodeError):
            args = json.loads(args)
    if not isinstance(args, dict):
        call.error = f'tool call "arguments" must be a JSON object, got {type(args).__name__}'
        return call
    call.arguments = args
    return call


def parse_turn(text: str) -> ParsedTurn:
    """Split a completion into reasoning, tool calls (in order) and the final answer."""
    turn = ParsedTurn()
    first = min((i for i in (text.find("<tool_call>"), text.lower().find("<answer>")) if i >= 0), default=-1)
    turn.reasoning = (text if first < 0 else text[:first]).strip()
    turn.calls = [_parse_call(m.group(1)) for m in _CALL_RE.finditer(text)]
    if m := _ANSWER_RE.search(text):
        turn.answer = m.group(1).strip()
    return turn


__all__ = ["CHATML", "ChatFormat", "ParsedCall", "ParsedTurn", "parse_turn"]
