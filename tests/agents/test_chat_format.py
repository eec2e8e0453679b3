"""Turn deltas in ChatML (reading a turn's text back: tests/tools/test_call_format.py)."""

from __future__ import annotations

from interleaf.agents import CHATML


def test_initial_and_tool_response_deltas() -> None:
    assert CHATML.initial("S", "Q") == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    # The completion ended on <|im_end|> itself: the delta starts with the newline after it.
    assert CHATML.tool_responses(["42"], completion_finished=True) == (
        "\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    # Cut by length: the end-of-turn marker must be added.
    assert CHATML.tool_responses(["a", "b"], completion_finished=False).startswith(
        "<|im_end|>\n<|im_start|>user\n<tool_response>\na\n</tool_response>\n<tool_response>\nb\n"
    )
