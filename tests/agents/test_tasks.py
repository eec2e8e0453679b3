"""Task suites are deterministic, well-formed and scored automatically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interleaf.agents import load_suite, score_answer
from interleaf.agents.tasks import parse_number
from interleaf.agents.tasks.arith import arith_tasks


@pytest.mark.parametrize("name", ["arith", "lookup", "mixed"])
def test_suites_are_deterministic(name: str) -> None:
    a, b, c = load_suite(name, 10, seed=1), load_suite(name, 10, seed=1), load_suite(name, 10, seed=2)
    assert [t.model_dump() for t in a.tasks] == [t.model_dump() for t in b.tasks]
    assert [t.question for t in a.tasks] != [t.question for t in c.tasks]
    assert len({t.id for t in a.tasks}) == 10
    assert all(t.answer for t in a.tasks)


def test_arith_answers_are_exact() -> None:
    for t in arith_tasks(30, seed=3):
        expr = t.metadata["expression"].replace("^", "**").replace(" mod ", " % ")
        assert str(eval(expr)) == t.answer, t.question  # the generator's arithmetic, checked by Python


def test_lookup_answers_are_in_the_corpus() -> None:
    suite = load_suite("lookup", 6, seed=0)
    search, visit = suite.make_tools()
    assert (search.name, visit.name) == ("search", "visit")
    from interleaf.agents.tasks.world import documents, make_towns

    docs = {d["url"]: d["text"] for d in documents(make_towns(20, 0))}
    for t in suite.tasks:
        assert t.answer in docs[t.metadata["url"]]


def test_mixed_uses_search_and_python() -> None:
    suite = load_suite("mixed", 3)
    assert [t.name for t in suite.make_tools()] == ["search", "visit", "python"]
    assert all(t.scorer == "numeric" for t in suite.tasks)


def test_scoring() -> None:
    assert parse_number("the answer is 1,234.5") == 1234.5
    assert parse_number("\\boxed{3/4}") == 0.75
    assert parse_number("none") is None
    assert score_answer("42", "42.0", "numeric") == 1.0
    assert score_answer("-450", "-450", "numeric") == 1.0
    assert score_answer("43", "42", "numeric") == 0.0
    assert score_answer(None, "42", "numeric") == 0.0
    assert score_answer("The Velka river.", "Velka", "text") == 1.0
    assert score_answer("Velka or Dorn or Mar or Tess or Rix or Ob", "Velka", "text") == 0.0
    assert score_answer("Ada Lorka", "ada lorka", "text") == 1.0
    with pytest.raises(ValueError, match="scorer"):
        score_answer("1", "1", "fuzzy")


def test_jsonl_loader(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    rows = [{"question": "1+1?", "answer": "2"}, {"question": "Capital of France?", "answer": "Paris", "id": "q2"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    suite = load_suite(str(path), 10)
    assert [t.id for t in suite.tasks] == ["math-0000", "q2"]
    assert [t.scorer for t in suite.tasks] == ["numeric", "text"]
    assert suite.tasks[0].score("2.0") == 1.0
    path.write_text('{"answer": 1}\n')
    with pytest.raises(ValueError, match="question"):
        load_suite(str(path), 1)
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("nope", 1)


async def test_lookup_task_solved_through_search_and_visit() -> None:
    from interleaf.agents import Agent, ScriptedModel

    suite = load_suite("lookup", 3, seed=4)
    task = suite.tasks[0]
    url, town = task.metadata["url"], task.metadata["town"]
    model = ScriptedModel(
        [
            f'<tool_call>{{"name": "search", "arguments": {{"query": ["{town}"]}}}}</tool_call>',
            f'<tool_call>{{"name": "visit", "arguments": {{"url": "{url}", "goal": "the fact"}}}}</tool_call>',
            f"<answer>{task.answer}</answer>",
        ]
    )
    traj = await Agent(tools=suite.make_tools()).run(task, model, system_extra=suite.system_prompt)
    search, visit = (t.tool_calls[0] for t in traj.turns[:2])
    assert url in search.result and not search.is_error
    assert task.answer in visit.result and not visit.is_error
    assert traj.correct and traj.tools == ["search", "visit"]
