"""The question's written-out arithmetic reaches the calculator whole: wired through the default agent."""

from __future__ import annotations

from interleaf.agents import ScriptedModel, get_agent
from interleaf.agents.tasks import Task
from interleaf.tools import calculator
from tests.grammar_check import can_end


def _calc(expression: str) -> str:
    return f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}</tool_call>'


async def test_the_default_agent_copies_the_question_s_arithmetic_whole() -> None:
    agent = get_agent("tir")
    agent.tools = [calculator]
    task = Task(id="m", question="Compute 4 mod 48.", answer="4", answer_type="number")
    model = ScriptedModel([_calc("4 mod 48"), "<answer>4</answer>"])
    traj = await agent.run(task, model)
    assert traj.correct
    first, second = (c.constraint.value for c in model.calls)
    assert can_end(first, _calc("4 mod 48"))
    assert not can_end(first, _calc("4 * (48)"))  # the operator miscopied: refused
    # The calculator's "4" joins the free numbers; the expression is still whole or absent.
    assert can_end(second, _calc("4 mod 48")) and can_end(second, _calc("(4 mod 48) + 4"))
    assert not can_end(second, _calc("4 + 4")) and not can_end(second, _calc("48 - 4"))


async def test_a_question_in_words_leaves_the_operators_free() -> None:
    agent = get_agent("tir")
    agent.tools = [calculator]
    task = Task(id="w", question="Add the 12 apples to the 30 pears.", answer="42", answer_type="number")
    model = ScriptedModel([_calc("30 - 12"), "<answer>18</answer>"])
    await agent.run(task, model)
    first = model.calls[0].constraint.value
    for expression in ["12 + 30", "30 - 12", "(12 * 30)"]:
        assert can_end(first, _calc(expression)), expression
    assert not can_end(first, _calc("12 + 31"))  # numbers stay grounded
