"""User datasets as JSONL, one task per line, in the common shapes:

* ``{"question": ..., "answer": ...}``
* ``{"problem": ..., "answer": ...}`` (MATH500, AIME files)
* ``{"problem": ..., "solution": ...}`` (MATH): the answer is the last ``\\boxed{...}`` of the solution

Optional keys: ``id``; ``answer_type`` (``number`` | ``text`` | ``expression``, else inferred: a
plain number is ``number``, anything math-verify reads is ``expression``, the rest ``text``);
``scorer`` (``math`` | ``text`` | ``exact``, else ``math`` for numbers and expressions, ``text``
otherwise); ``tools`` (names among the suite's tools, which are ``calculator`` and ``python``; the
default is ``["calculator"]``). Other keys are kept as the task's metadata. A line that fits no
shape is rejected with the file, the line number and the missing key.

Exemplars: the ``arith`` exemplar pool (calculator use; generated, so disjoint from any file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

from interleaf.agents.tasks.arith import arith_exemplars
from interleaf.agents.tasks.scoring import SCORERS, check_scorer, parse_math
from interleaf.agents.tasks.task import AnswerType, Task, TaskSuite

SYSTEM = "Compute with the calculator tool when it helps, then give only the final answer."
TOOLS = ("calculator", "python")
"""Tools a JSONL line may name."""
DEFAULT_TOOLS = ["calculator"]


class TaskFileError(ValueError):
    """A line of a task file is not a task; the message names the file, the line and the key."""

    def __init__(self, path: Path, lineno: int, problem: str) -> None:
        super().__init__(f"{path}:{lineno}: {problem}")
        self.path = path
        """The file."""
        self.lineno = lineno
        """The line (1-based)."""


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def infer_answer_type(answer: str) -> str:
    """``number`` for a plain number, ``expression`` for other math, ``text`` otherwise."""
    if re.fullmatch(r"-?\d+(\.\d+)?", answer.strip()):
        return "number"
    return "expression" if parse_math(answer) else "text"


def _task_from_row(row: Any, p: Path, lineno: int, index: int) -> Task:
    if not isinstance(row, dict):
        raise TaskFileError(p, lineno, f"expected a JSON object, got {type(row).__name__}")
    if "question" in row:
        question_key = "question"
    elif "problem" in row:
        question_key = "problem"
    else:
        raise TaskFileError(p, lineno, f'missing key "question" (or "problem"); keys: {sorted(row)}')
    if "answer" in row:
        answer = None if row["answer"] is None else str(row["answer"])
    elif "solution" in row:
        answer = last_boxed(str(row["solution"]))
        if answer is None:
            raise TaskFileError(p, lineno, 'key "solution" has no \\boxed{...} to take the answer from; add "answer"')
    else:
        raise TaskFileError(p, lineno, 'missing key "answer" (or "solution")')
    if answer is None or not answer.strip():
        raise TaskFileError(p, lineno, '"answer" is empty; give the reference answer')
    answer_type = row.get("answer_type") or infer_answer_type(answer)
    if answer_type not in get_args(AnswerType):
        choices = ", ".join(get_args(AnswerType))
        raise TaskFileError(p, lineno, f'"answer_type" is {answer_type!r}; use one of {choices}')
    scorer = row.get("scorer") or ("text" if answer_type == "text" else "math")
    try:
        scorer = check_scorer(scorer)
    except ValueError:
        raise TaskFileError(p, lineno, f'"scorer" is {scorer!r}; use one of {", ".join(SCORERS)}') from None
    tools = row.get("tools", DEFAULT_TOOLS)
    if not isinstance(tools, list) or any(t not in TOOLS for t in tools):
        raise TaskFileError(p, lineno, f'"tools" is {tools!r}; use a list of names among {", ".join(TOOLS)}')
    known = {question_key, "answer", "solution", "id", "answer_type", "scorer", "tools"}
    return Task(
        id=str(row.get("id", f"{p.stem}-{index:04d}")),
        question=str(row[question_key]),
        answer=answer,
        scorer=scorer,
        answer_type=answer_type,
        tools=list(tools),
        metadata={k: v for k, v in row.items() if k not in known},
    )


def load_jsonl_tasks(path: str | Path, n: int | None = None) -> list[Task]:
    """Read tasks from ``path``; the first ``n`` when given. Raises ``TaskFileError`` on a bad line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task file {str(p)!r} not found; pass a JSONL file with question/answer lines")
    tasks: list[Task] = []
    with p.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(p, lineno, f"not JSON ({exc.msg}); each line must be one object") from None
            tasks.append(_task_from_row(row, p, lineno, len(tasks)))
            if n is not None and len(tasks) >= n:
                break
    return tasks


def jsonl_suite(path: str | Path, n: int | None = None) -> TaskSuite:
    """A suite from a JSONL file: the calculator and python tools (each task offered those it names)."""
    tasks = load_jsonl_tasks(path, n)
    used = {t for task in tasks for t in task.tools or []}

    def make_tools() -> list:
        from interleaf.tools import calculator, python_tool

        return [t for t in (calculator, python_tool) if t.name in used]

    exemplars = arith_exemplars(avoid={t.question for t in tasks})
    return TaskSuite(Path(path).stem, tasks, make_tools, SYSTEM, {"path": str(path), "n": n}, exemplars)


__all__ = ["TaskFileError", "infer_answer_type", "jsonl_suite", "last_boxed", "load_jsonl_tasks"]
