"""Turn deltas in ChatML and parsing a turn's text."""

from __future__ import annotations

from interleaf.agents import CHATML, parse_turn


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


def test_parse_turn_calls_answer_and_errors() -> None:
    t = parse_turn('think <tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>')
    assert t.reasoning == "think"
    assert [(c.name, c.arguments, c.error) for c in t.calls] == [("python", {"code": "print(1)"}, None)]
    assert t.answer is None and t.format_error is None

    t = parse_turn("so <ANSWER> 12 </ANSWER>")
    assert t.answer == "12" and not t.calls

    t = parse_turn('<tool_call>{"name": "python", "arguments": {"code": </tool_call>')
    assert t.calls[0].arguments is None and "not valid JSON" in (t.format_error or "")

    t = parse_turn('<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>')
    assert t.calls[0].arguments == {"x": 1}  # double-encoded arguments are accepted

    t = parse_turn('<tool_call>{"arguments": {}}</tool_call>')
    assert t.calls[0].error and "name" in t.calls[0].error
