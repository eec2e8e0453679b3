"""Exemplar retrieval (kNN few-shot) and grounded text answers, wired through the agent."""

from __future__ import annotations

import pytest

from interleaf.agents import Agent, Exemplar, ExemplarStep, ScriptedModel, Task, load_suite
from interleaf.agents.agent import default_agent
from interleaf.agents.exemplars import nearest_exemplars, question_shape
from interleaf.agents.tasks.lookup import _QUESTIONS
from interleaf.agents.tasks.mixed import _KINDS
from interleaf.tools import tool
from tests.grammar_check import can_end


def _shot(question: str, answer: str = "x") -> Exemplar:
    return Exemplar(question=question, answer=answer)


def test_question_shape_masks_names_and_numbers() -> None:
    assert question_shape("Who founded the town of Solka Minor in 1129?") == [
        "who", "founded", "the", "town", "of", "<name>", "in", "<num>", "?",
    ]  # fmt: skip
    assert question_shape("Who founded Velka?") == question_shape("Who founded Brumin?")


def test_nearest_is_the_same_kind_and_comes_last() -> None:
    pool = [
        _shot("In what year was the town of Tenve founded?"),
        _shot("Who founded the town of Tenve?"),
        _shot("What is the town of Brumin known for?"),
        _shot("On which river does the town of Kaka lie?"),
    ]
    near = nearest_exemplars("Who founded the town of Soldraten?", pool, 2)
    assert len(near) == 2 and near[-1] is pool[1]
    assert nearest_exemplars("What is the town of Draten known for?", pool, 1) == [pool[2]]
    assert nearest_exemplars("x", pool, 0) == [] and nearest_exemplars("x", [], 3) == []
    assert sorted(map(id, nearest_exemplars("x", pool, 9))) == sorted(map(id, pool))  # k >= pool: all
    # Nothing in common: ties keep pool order (the first is nearest, so last).
    assert nearest_exemplars("zzz", pool, 2) == [pool[1], pool[0]]


@pytest.mark.parametrize("name", ["lookup", "mixed"])
def test_each_suite_pool_has_one_exemplar_per_question_kind_and_retrieval_finds_it(name: str) -> None:
    suite = load_suite(name, 50)
    kinds = [q[0] for q in _QUESTIONS] if name == "lookup" else _KINDS
    assert len(suite.exemplars) == len(kinds)
    for task in suite.tasks:
        nearest = nearest_exemplars(task.question, suite.exemplars, 3)[-1]
        # Same kind: the question with its names masked is the same template.
        assert question_shape(nearest.question) == question_shape(task.question), task.question


def test_the_agent_shows_the_nearest_exemplars_before_the_question() -> None:
    pool = [_shot("What is 4 + 4?", "8"), _shot("Who founded the town of Kave?", "Ada Kaith")]
    nearest = Agent(name="n", max_exemplars=1, exemplar_choice="nearest")
    first = Agent(name="f", max_exemplars=1)
    text = nearest.render_initial("Who founded the town of Solka?", exemplars=pool)
    assert "Who founded the town of Kave?" in text and "4 + 4" not in text
    text = first.render_initial("Who founded the town of Solka?", exemplars=pool)
    assert "4 + 4" in text and "Kave" not in text
    assert default_agent().exemplar_choice == "nearest" and default_agent().ground_text
    with pytest.raises(ValueError, match="exemplar_choice"):
        Agent(name="bad", exemplar_choice="random")  # type: ignore[arg-type]


@tool
def search(query: str) -> str:
    """Search.

    Args:
        query: what to look for.
    """
    return "Solka is a town on the Velka river. It was founded in 1129 by Greta Othqua."


def _call(query: str) -> str:
    return f'<tool_call>{{"name": "search", "arguments": {{"query": "{query}"}}}}</tool_call>'


async def test_a_text_answer_is_grounded_in_the_episode_tool_outputs() -> None:
    task = Task(id="t", question="Who founded the town of Solka?", answer="Greta Othqua")
    shots = [
        Exemplar(
            question="Who founded the town of Kave?",
            steps=[ExemplarStep(tool="search", arguments={"query": "Kave"}, result="Kave was founded by Ada Kaith.")],
            answer="Ada Kaith",
        )
    ]
    model = ScriptedModel([_call("Solka"), "<answer>Greta Othqua</answer>"])
    traj = await Agent(name="g", tools=[search], ground_text=True).run(task, model, exemplars=shots)
    assert traj.correct
    before, after = (c.constraint.value for c in model.calls)
    assert can_end(before, "<answer>Ada Kaith</answer>")  # no tool output yet: any text
    assert can_end(after, "<answer>Greta Othqua</answer>") and can_end(after, "<answer>Velka river</answer>")
    for refused in ["Ada Kaith", "Solka", "Greta Othqua Velka"]:  # the example's answer, the question's name
        assert not can_end(after, f"<answer>{refused}</answer>"), refused
    assert can_end(after, _call("anything"))  # calls are not restricted
    # A numeric answer keeps its pattern; ground_text off keeps any text.
    number = Task(id="n", question="When was Solka founded?", answer="1129", answer_type="number")
    model = ScriptedModel([_call("Solka"), "<answer>1129</answer>"])
    await Agent(name="g", tools=[search], ground_text=True).run(number, model)
    assert not can_end(model.calls[1].constraint.value, "<answer>Greta Othqua</answer>")
    model = ScriptedModel([_call("Solka"), "<answer>Ada Kaith</answer>"])
    await Agent(name="o", tools=[search]).run(task, model)
    assert can_end(model.calls[1].constraint.value, "<answer>Ada Kaith</answer>")


@tool
def census(query: str) -> str:
    """Look a town up.

    Args:
        query: the town.
    """
    return "1. Solka was founded in 1129. At the last census Solka had a population of 42780."


async def test_relevant_numbers_only_grounds_the_calculator_in_the_asked_fact() -> None:
    from interleaf.tools import calculator

    task = Task(id="p", question="What is the population of Solka times 2?", answer="85560", answer_type="number")
    script = [
        '<tool_call>{"name": "census", "arguments": {"query": "Solka"}}</tool_call>',
        '<tool_call>{"name": "calculator", "arguments": {"expression": "42780 * 2"}}</tool_call>',
        "<answer>85560</answer>",
    ]
    for relevant in (True, False):
        model = ScriptedModel(script)
        agent = Agent(name="r", tools=[census, calculator], ground_numbers=True, relevant_numbers_only=relevant)
        assert (await agent.run(task, model)).correct
        grammar = model.calls[1].constraint.value
        assert can_end(grammar, script[1])
        # The founding year and the list number: refused only with the relevance filter.
        for other in ("1129 * 2", "1 * 2"):
            call = script[1].replace("42780 * 2", other)
            assert can_end(grammar, call) is not relevant, (relevant, other)
