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
    # Bare LaTeX with braces and no backslash is LaTeX too (math-verify alone reads 2^{10} as 2).
    ("1024", "2^{10}"),
    ("1000", "10^{3}"),
    # A Unicode minus is a minus.
    ("-5", "\u22125"),
    # A list against a list: the same members in any order.
    ("1, -2", "-2, 1"),
    ("3, 5", r"\{5, 3\}"),
]
DIFFERENT = [
    (r"2\sqrt{3}", "3"),
    (r"-\frac{1}{2}", r"\frac{1}{2}"),
    (r"\frac{1}{2}", "2"),
    ("43", "42"),
    ("3.46", r"2\sqrt{3}"),  # outside the 1e-6 relative tolerance
    ("Paris", "42"),
    ("2", "2^{10}"),
    ("10", "10^{3}"),
    ("5", "\u22125"),
    # Two integers are equal only when they are the same integer (1e-6 relative would take these).
    ("1000001", "1000000"),
    ("123456700", "123456789"),
    ("100000000000000000001", "100000000000000000000"),
    # Several candidates for one value; one member of a list; a different list.
    ("7 or 8", "8"),
    ("7, 8", "8"),
    (r"7 \text{ or } 8", "8"),
    ("1, 2, 3, 4, 5, 6, 7, 8", "8"),
    ("1, 2, 3", "3"),
    ("1/2 or 1/3", "1/3"),
    ("5", "3, 5"),
    ("9, 5", "3, 5"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_math_scorer_equivalences_both_ways(a: str, b: str) -> None:
    assert score_answer(a, b, "math") == 1.0
    assert score_answer(b, a, "math") == 1.0


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_math_scorer_differences_both_ways(a: str, b: str) -> None:
    assert score_answer(a, b, "math") == 0.0
    assert score_answer(b, a, "math") == 0.0


def test_non_integers_keep_the_relative_tolerance() -> None:
    assert score_answer("0.3333333", "1/3", "math") == 1.0
    assert score_answer("1000000.0000001", "1000000.0000002", "math") == 1.0
    assert score_answer("1000000.5", "1000000.9", "math") == 1.0  # within 1e-6 of each other
    assert score_answer("1000000", "1000001", "math") == 0.0  # ... but these two are integers


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("Paris or London", "Paris"), ("London, Paris, Rome", "Paris"), ("not Paris", "Paris"),
     ("Paris and London", "Paris"), ("Paris; London", "Paris"), ("neither London nor Paris", "Paris")],
)  # fmt: skip
def test_the_text_scorer_refuses_candidate_lists_and_negations(answer: str, expected: str) -> None:
    assert score_answer(answer, expected, "text") == 0.0
    assert score_answer(f"The {expected} one.", expected, "text") == 1.0  # a short answer holding it still counts


def test_pathological_math_is_refused_quickly_off_the_main_thread() -> None:
    """Scoring runs in Ray actors' event-loop threads, where math-verify's signal timeouts cannot
    run: every call must work there, and inputs that would take sympy minutes are not read as math."""
    import threading

    cases = [
        ("1024", "2^{10}", 1.0),  # LaTeX through math-verify's parser
        (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}", 1.0),  # symbolic, through verify
        (r"\sqrt{x}", "x^{1/2}", 1.0),
        ("9^{9^{9}}", "5", 0.0),  # its exact value has 369 million digits
        ("10^{10^{10}}", "10^{10^{10}}+1", 0.0),
        ("(x+1)^{99999}", "x^{99999}", 0.0),  # comparing them expands a 100000-term polynomial
        ("1" * 5000, "1" * 5000, 1.0),  # too long to read as math: compared as text
    ]
    results: dict[int, float | BaseException] = {}

    def score_all() -> None:
        for i, (answer, expected, _) in enumerate(cases):
            try:
                results[i] = score_answer(answer, expected, "math")
            except BaseException as exc:  # reported below
                results[i] = exc

    worker = threading.Thread(target=score_all)
    worker.start()
    worker.join()
    assert results == {i: want for i, (_, _, want) in enumerate(cases)}


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
        # Wrong types are named with the value as the file wrote it, never turned into text.
        ({"question": None, "answer": "1"}, '"question" is null; give it as a JSON string'),
        ({"question": 7, "answer": "1"}, '"question" is 7; give it as a JSON string'),
        ({"problem": "q", "solution": ["\\boxed{1}"]}, '"solution" is ["\\\\boxed{1}"]; give it as a JSON string'),
        ({"question": "q", "answer": True}, '"answer" is true; give the reference answer as a string or a number'),
        ({"question": "q", "answer": None}, '"answer" is null; give the reference answer'),
        ({"question": "q", "answer": {"v": 1}}, '"answer" is {"v": 1}; give the reference answer'),
        ('{"question": "q", "answer": NaN}', '"answer" is NaN, which is not a JSON number'),
        ('{"question": "q", "answer": "1", "level": [1, Infinity]}', '"level"[1] is Infinity'),
        ({"question": "q\ud800", "answer": "1"}, '"question" holds a lone surrogate U+D800 at index 1'),
        ({"question": "q", "answer": "1", "meta": {"k": "\udfff"}}, '"meta"."k" holds a lone surrogate U+DFFF'),
        ({"question": "q", "answer": "1", "id": True}, '"id" is true; give a non-empty string or an integer'),
        ({"question": "q", "answer": "1", "answer_type": {"a": 1}}, '"answer_type" is {"a": 1}; use one of'),
        ({"question": "q", "answer": "1", "scorer": ["math"]}, '"scorer" is ["math"]; use one of'),
        ({"question": "q", "answer": "1", "tools": "calculator"}, '"tools" is "calculator"; use a list'),
        ({"question": "q", "answer": "1", "tools": ["calculator", "calculator"]}, "name each tool once"),
        ({"question": "q", "answer": "2", "id": "data-0000"}, "\"id\" 'data-0000' is also the id of line 1"),
    ],
)
def test_jsonl_loader_rejections_name_file_line_and_key(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path, {"question": "fine", "answer": "1"}, row)
    with pytest.raises(TaskFileError, match=re.escape(message)) as err:
        load_suite(path, 10)
    assert str(err.value).startswith(f"{path}:2: ") and err.value.lineno == 2


def test_jsonl_loader_reads_numbers_bom_crlf_and_null_defaults(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [
        {"question": "a?", "answer": 7, "id": 12},
        {"question": "b?", "answer": -2.5, "answer_type": None, "tools": None},
        {"question": "Capital of France?", "answer": "Paris"},
        {"question": "c?", "answer": "\u22125"},
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in rows).encode() + b"\r\n")
    tasks = load_suite(str(path), 10).tasks
    assert [(t.id, t.answer, t.answer_type) for t in tasks] == [
        ("12", "7", "number"), ("data-0001", "-2.5", "number"), ("data-0002", "Paris", "text"),
        ("data-0003", "\u22125", "number"),
    ]  # fmt: skip
    # A text answer is not computed: no tool by default, so an agent that must call one first need not.
    assert [t.tools for t in tasks] == [["calculator"], ["calculator"], [], ["calculator"]]
    assert tasks[3].score("-5") == 1.0


def test_jsonl_ids_are_unique_and_both_lines_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"question": "a", "answer": "1", "id": "x"}, {"question": "b", "answer": "2"},
                  {"question": "c", "answer": "3", "id": "x"})  # fmt: skip
    with pytest.raises(TaskFileError, match=re.escape(f"{path}:3: \"id\" 'x' is also the id of line 1")):
        load_suite(path, 10)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no tasks (the file is empty or holds only blank lines)"),
        (b"\n  \n\t\n", "no tasks (the file is empty or holds only blank lines)"),
        (b'{"question": "a", "answer": "1"}\n{"question": "caf\xe9", "answer": "1"}\n',
         ":2: not UTF-8 (byte 0xe9 at column 18)"),
    ],
)  # fmt: skip
def test_jsonl_files_without_tasks_or_not_utf8_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(TaskFileError, match=re.escape(message)) as err:
        load_suite(str(path), 10)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("name", ["arith", "data.jsonl"])
@pytest.mark.parametrize("n", [0, -1])
def test_a_suite_of_fewer_than_one_task_is_refused(tmp_path: Path, name: str, n: int) -> None:
    if name.endswith(".jsonl"):
        name = _write(tmp_path, {"question": "a", "answer": "1"})
    with pytest.raises(ValueError, match=re.escape(f"n must be an integer >= 1, got {n}")):
        load_suite(name, n)


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
