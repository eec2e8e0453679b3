"""The ``answer`` tool: how an agent submits its final answer as a tool call."""

from __future__ import annotations

from interleaf.tools.tool import tool

__all__ = ["answer"]


@tool(name="answer", timeout_s=5.0, max_output_tokens=None)
def answer(answer: str) -> str:
    """Submit the final answer to the task. Call this once, when you are done.

    Args:
        answer: the final answer, as short as the task allows (e.g. a number or a name).
    """
    return answer
