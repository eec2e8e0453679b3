"""Task suites are deterministic, well-formed and scored automatically."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from interleaf.agents import Exemplar, Task, TaskFileError, TaskSuite, load_suite, score_answer
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


def test_mixed_uses_search_and_the_calculator() -> None:
    suite = load_suite("mixed", 3)
    assert [t.name for t in suite.make_tools()] == ["search", "visit", "calculator"]
    assert all(t.scorer == "math" and t.answer_type == "number" for t in suite.tasks)


@pytest.mark.parametrize("name", ["arith", "lookup", "mixed"])
def test_exemplars_are_real_and_disjoint_from_the_tasks(name: str) -> None:
    for seed in range(3):
        suite = load_suite(name, 50, seed=seed)
        asked = {t.question for t in suite.tasks}
        assert suite.exemplars and not asked & {e.question for e in suite.exemplars}
        towns = {town for t in suite.tasks for town in t.metadata.get("towns", [t.metadata.get("town")])}
        tools = {t.name: t for t in suite.make_tools()}
        for e in suite.exemplars:
            assert not any(town and town in e.question for town in towns)  # no evaluated town either
            for step in e.steps:  # the shown results are what the tools return
                assert str(tools[step.tool](**step.arguments)) == step.result
    with pytest.raises(ValueError, match="disjoint"):
        TaskSuite("x", suite.tasks[:1], list, exemplars=[Exemplar(question=suite.tasks[0].question, answer="1")])


# Equivalences the math scorer must honour, each checked in both directions.
EQUIVALENT = [
    (r"\frac{1}{2}", "1/2"),
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{1}{2}", r"\dfrac{1}{2}"),
    ("1/2", "0.5"),
    (r"2\sqrt{3}", "3.4641016"),
    (r"\boxed{42}", "42"),
    ("x=3", "3"),
    ("42", "42.0"),
    ("1,742", "1742"),
    ("-450", "-450"),
    ("1e-3", "0.001"),
]
DIFFERENT = [
    (r"2\sqrt{3}", "3"),
    (r"-\frac{1}{2}", r"\frac{1}{2}"),
    (r"\frac{1}{2}", "2"),
    ("43", "42"),
    ("3.46", r"2\sqrt{3}"),  # outside the 1e-6 relative tolerance
    ("Paris", "42"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_math_scorer_equivalences_both_ways(a: str, b: str) -> None:
    assert score_answer(a, b, "math") == 1.0
    assert score_answer(b, a, "math") == 1.0


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_math_scorer_differences_both_ways(a: str, b: str) -> None:
    assert score_answer(a, b, "math") == 0.0
    assert score_answer(b, a, "math") == 0.0


def test_text_exact_and_legacy_scorers() -> None:
    assert parse_number("the answer is 1,234.5") == 1234.5
    assert parse_number("\\boxed{3/4}") == 0.75
    assert parse_number("none") is None
    assert score_answer("42", "42.0", "numeric") == 1.0  # the former name of "math"
    assert score_answer(None, "42", "math") == 0.0
    assert score_answer("The Velka river.", "Velka", "text") == 1.0
    assert score_answer("Velka or Dorn or Mar or Tess or Rix or Ob", "Velka", "text") == 0.0
    assert score_answer("Ada Lorka", "ada lorka", "text") == 1.0
    assert score_answer("Ada Lorka", "ada lorka", "exact") == 0.0
    assert score_answer(" Ada Lorka ", "Ada Lorka", "exact") == 1.0
    assert Task(id="t", question="q", answer="5", scorer="numeric").scorer == "math"
    with pytest.raises(ValueError, match="scorer"):
        score_answer("1", "1", "fuzzy")


def _write(tmp_path: Path, *rows: object) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n\n")
    return str(path)


def test_jsonl_loader_shapes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"question": "1+1?", "answer": 2},
        {"problem": "Half of one?", "answer": "\\frac{1}{2}", "id": "p2", "level": 3},
        {"problem": "sin 60?", "solution": "It is \\boxed{2} no, \\boxed{\\frac{\\sqrt{3}}{2}}."},
        {"question": "Capital of France?", "answer": "Paris", "tools": []},
        {"question": "Code?", "answer": "A-7", "scorer": "exact", "answer_type": "text", "tools": ["python"]},
    )
    tasks = load_suite(path, 10).tasks
    assert [t.id for t in tasks] == ["data-0000", "p2", "data-0002", "data-0003", "data-0004"]
    assert [t.answer for t in tasks] == ["2", "\\frac{1}{2}", "\\frac{\\sqrt{3}}{2}", "Paris", "A-7"]
    assert [t.answer_type for t in tasks] == ["number", "expression", "expression", "text", "text"]
    assert [t.scorer for t in tasks] == ["math", "math", "math", "text", "exact"]
    assert [t.tools for t in tasks] == [["calculator"]] * 3 + [[], ["python"]]
    assert tasks[1].metadata == {"level": 3}
    assert tasks[1].score("0.5") == 1.0 and tasks[1].score("1/2") == 1.0 and tasks[1].score("2") == 0.0
    assert tasks[2].score("0.8660254") == 1.0
    assert load_suite(path, 2).tasks == tasks[:2]
    suite = load_suite(path, 10)
    assert [t.name for t in suite.make_tools()] == ["calculator", "python"]
    assert suite.exemplars  # the calculator examples of the arith pool


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"answer": 1}, 'missing key "question" (or "problem")'),
        ({"question": "q"}, 'missing key "answer" (or "solution")'),
        ({"problem": "q"}, 'missing key "answer" (or "solution")'),
        ({"problem": "q", "solution": "no box here"}, "no \\boxed{...}"),
        ({"question": "q", "answer": " "}, '"answer" is empty'),
        ({"question": "q", "answer": "1", "answer_type": "date"}, '"answer_type" is'),
        ({"question": "q", "answer": "1", "scorer": "fuzzy"}, '"scorer" is'),
        ({"question": "q", "answer": "1", "tools": ["browser"]}, '"tools" is'),
        ([1, 2], "expected a JSON object"),
        ("{not json", "not JSON"),
    ],
)
def test_jsonl_loader_rejections_name_file_line_and_key(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path, {"question": "fine", "answer": "1"}, row)
    with pytest.raises(TaskFileError, match=re.escape(message)) as err:
        load_suite(path, 10)
    assert str(err.value).startswith(f"{path}:2: ") and err.value.lineno == 2


def test_unknown_suite_and_missing_file() -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("nope", 1)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_suite("/nonexistent/tasks.jsonl", 1)


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
