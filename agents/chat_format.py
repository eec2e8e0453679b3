"""Rendering turn *deltas* in a chat template (DESIGN §5).

The conversation's token ids are append-only: turn 0 sends the rendered system + user messages
and the generation prompt; every later turn sends only what follows the previous completion (the
end-of-turn marker when the completion lacks one, the tool responses as a user message, and the
next generation prompt). History is never re-rendered, so the prefix the engine cached is always
a prefix of the next request. What the model writes inside a turn (calls, answers) and how it is
read back is the tool-call format, ``interleaf.tools.call_format``.
"""

from __future__ import annotations

from dataclasses import dataclass

from interleaf.tools import format_tool_responses


@dataclass(frozen=True)
class ChatFormat:
    """A ChatML-style template (SmolLM2, Qwen): ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

    start: str = "<|im_start|>"
    """Opens a message (the role follows on the same line)."""
    end: str = "<|im_end|>"
    """Closes a message: the end-of-turn marker."""
    tool_role: str = "user"
    """Role that carries tool responses (hermes/Qwen put ``<tool_response>`` in a user message)."""

    def message(self, role: str, content: str) -> str:
        """One whole message."""
        return f"{self.start}{role}\n{content}{self.end}\n"

    def generation_prompt(self) -> str:
        """What opens the assistant's turn for the model to continue."""
        return f"{self.start}assistant\n"

    def initial(self, system: str, user: str, history: str = "") -> str:
        """Turn 0's delta: system message, ``history`` (earlier messages, e.g. worked examples), the
        user message, then the assistant generation prompt."""
        return self.message("system", system) + history + self.message("user", user) + self.generation_prompt()

    def close_turn(self, completion_finished: bool) -> str:
        """What closes the assistant's turn: the completion already ends with the end-of-turn
        token when the engine stopped on it; otherwise (length cut) the marker must be added."""
        return "\n" if completion_finished else self.end + "\n"

    def tool_responses(self, results: list[str], completion_finished: bool) -> str:
        """The delta after a tool-calling turn: tool responses as one message, then the next prompt."""
        body = format_tool_responses(results)
        return self.close_turn(completion_finished) + self.message(self.tool_role, body) + self.generation_prompt()

    def user_feedback(self, text: str, completion_finished: bool) -> str:
        """The delta that tells the model something (e.g. a turn with no action) and asks again."""
        return self.close_turn(completion_finished) + self.message("user", text) + self.generation_prompt()


CHATML = ChatFormat()


__all__ = ["CHATML", "ChatFormat"]
