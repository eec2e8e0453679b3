"""User datasets as JSONL, one task per line, in the common shapes:

* ``{"question": ..., "answer": ...}``
* ``{"problem": ..., "answer": ...}`` (MATH500, AIME files)
* ``{"problem": ..., "solution": ...}`` (MATH): the answer is the last ``\\boxed{...}`` of the solution

Optional keys: ``id``; ``answer_type`` (``number`` | ``text`` | ``expression``, else inferred: a
plain number is ``number``, anything math-verify reads is ``expression``, the rest ``text``);
``scorer`` (``math`` | ``text`` | ``exact``, else ``math`` for numbers and expressions, ``text``
otherwise); ``tools`` (names among the suite's tools, which are ``calculator`` and ``python``; the
default is ``["calculator"]`` for numbers and expressions, none for text answers). An optional key
that is ``null`` takes its default. Other keys are kept as the task's metadata.

The file is UTF-8 (a byte-order mark is allowed). What is not a task is refused with the file, the
line and the key: a line that fits no shape, a value of the wrong type (``"question": null``,
``"answer": true``; an answer may be a JSON number), NaN or Infinity, a lone UTF-16 surrogate, bytes
that are not UTF-8, an ``id`` used twice (both lines named), and a file without tasks.

Exemplars: the ``arith`` exemplar pool (calculator use; generated, so disjoint from any file).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, get_args

from interleaf.agents.tasks.arith import arith_exemplars
from interleaf.agents.tasks.scoring import SCORERS, check_scorer, normalize_minus, parse_math
from interleaf.agents.tasks.task import AnswerType, Task, TaskSuite
from interleaf.text import surrogate_problem

SYSTEM = "Compute with the calculator tool when it helps, then give only the final answer."
TOOLS = ("calculator", "python")
"""Tools a JSONL line may name."""
DEFAULT_TOOLS = ["calculator"]


class TaskFileError(ValueError):
    """A task file is not a task suite; the message names the file, the line and the key."""

    def __init__(self, path: Path, lineno: int | None, problem: str) -> None:
        super().__init__(f"{path}:{lineno}: {problem}" if lineno else f"{path}: {problem}")
        self.path = path
        """The file."""
        self.lineno = lineno
        """The line (1-based); None for a problem of the whole file (no tasks)."""


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
    if re.fullmatch(r"-?\d+(\.\d+)?", normalize_minus(answer).strip()):
        return "number"
    return "expression" if parse_math(answer) else "text"


def _shown(value: Any) -> str:
    """``value`` as the file wrote it (``null``, ``true``, ``NaN``, ``{"a": 1}``), cut at 60 characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_problem(value: Any, where: str) -> str | None:
    """What UTF-8 or JSON cannot hold in ``value`` (a lone surrogate, NaN, Infinity), named by its
    key path (``"level"``, ``"meta"."tags"[2]``); None when nothing."""
    if isinstance(value, str):
        problem = surrogate_problem(value)
        return None if problem is None else f"{where} holds {problem}, which UTF-8 cannot carry"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {_shown(value)}, which is not a JSON number"
    if isinstance(value, dict):
        for key, item in value.items():
            if (problem := surrogate_problem(key)) is not None:
                return f"a key of {where} holds {problem}, which UTF-8 cannot carry"
            if (problem := _value_problem(item, f'{where}."{key}"')) is not None:
                return problem
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (problem := _value_problem(item, f"{where}[{i}]")) is not None:
                return problem
    return None


def _text(row: dict[str, Any], key: str, p: Path, lineno: int) -> str:
    """``row[key]`` when it is a non-blank string; else ``TaskFileError`` naming the key and the value."""
    value = row[key]
    if not isinstance(value, str):
        raise TaskFileError(p, lineno, f'"{key}" is {_shown(value)}; give it as a JSON string')
    if not value.strip():
        raise TaskFileError(p, lineno, f'"{key}" is empty; give the {key}')
    return value


def _answer(value: Any, p: Path, lineno: int) -> str:
    """The reference answer: a string, or a JSON number (an integer or a finite decimal) as written."""
    if isinstance(value, str):
        if not value.strip():
            raise TaskFileError(p, lineno, '"answer" is empty; give the reference answer')
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # NaN and Infinity were refused with the rest of the line
    raise TaskFileError(p, lineno, f'"answer" is {_shown(value)}; give the reference answer as a string or a number')


def _task_from_row(row: Any, p: Path, lineno: int, index: int) -> Task:
    if not isinstance(row, dict):
        raise TaskFileError(p, lineno, f"expected a JSON object, got {type(row).__name__}")
    for key, value in row.items():
        if (problem := surrogate_problem(key)) is not None:
            raise TaskFileError(p, lineno, f"a key holds {problem}, which UTF-8 cannot carry")
        if (problem := _value_problem(value, f'"{key}"')) is not None:
            raise TaskFileError(p, lineno, problem)
    if "question" in row:
        question_key = "question"
    elif "problem" in row:
        question_key = "problem"
    else:
        raise TaskFileError(p, lineno, f'missing key "question" (or "problem"); keys: {sorted(row)}')
    question = _text(row, question_key, p, lineno)
    if "answer" in row:
        answer = _answer(row["answer"], p, lineno)
    elif "solution" in row:
        boxed = last_boxed(_text(row, "solution", p, lineno))
        if boxed is None:
            raise TaskFileError(p, lineno, 'key "solution" has no \\boxed{...} to take the answer from; add "answer"')
        if not boxed.strip():
            raise TaskFileError(p, lineno, 'the last \\boxed{} of "solution" is empty; add "answer"')
        answer = boxed
    else:
        raise TaskFileError(p, lineno, 'missing key "answer" (or "solution")')
    # An optional key that is absent or null takes its default.
    task_id = row.get("id")
    if task_id is None:
        task_id = f"{p.stem}-{index:04d}"
    elif isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    elif not isinstance(task_id, str) or not task_id.strip():
        raise TaskFileError(p, lineno, f'"id" is {_shown(task_id)}; give a non-empty string or an integer')
    answer_type = row.get("answer_type")
    if answer_type is None:
        answer_type = infer_answer_type(answer)
    elif not isinstance(answer_type, str) or answer_type not in get_args(AnswerType):
        choices = ", ".join(get_args(AnswerType))
        raise TaskFileError(p, lineno, f'"answer_type" is {_shown(answer_type)}; use one of {choices}')
    scorer = row.get("scorer")
    if scorer is None:
        scorer = "text" if answer_type == "text" else "math"
    try:
        scorer = check_scorer(scorer)
    except ValueError:
        raise TaskFileError(p, lineno, f'"scorer" is {_shown(scorer)}; use one of {", ".join(SCORERS)}') from None
    tools = row.get("tools")
    if tools is None:
        # A text answer (a name, a word) is not computed: no tool is offered, so an agent that
        # must call a tool before answering (``min_tool_calls``) answers at once.
        tools = [] if answer_type == "text" else list(DEFAULT_TOOLS)
    elif not isinstance(tools, list) or any(not isinstance(t, str) or t not in TOOLS for t in tools):
        raise TaskFileError(p, lineno, f'"tools" is {_shown(tools)}; use a list of names among {", ".join(TOOLS)}')
    elif len(set(tools)) < len(tools):
        raise TaskFileError(p, lineno, f'"tools" is {_shown(tools)}; name each tool once')
    known = {question_key, "answer", "solution", "id", "answer_type", "scorer", "tools"}
    return Task(
        id=task_id,
        question=question,
        answer=answer,
        scorer=scorer,
        answer_type=answer_type,
        tools=list(tools),
        metadata={k: v for k, v in row.items() if k not in known},
    )


def load_jsonl_tasks(path: str | Path, n: int | None = None) -> list[Task]:
    """Read tasks from ``path`` (UTF-8, a byte-order mark allowed); the first ``n`` when given.
    Raises ``TaskFileError`` naming the file, the line and the key on a bad line, a repeated ``id``
    or a file without tasks, and ``ValueError`` for ``n < 1``."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task file {str(p)!r} not found; pass a JSONL file with question/answer lines")
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
                raise TaskFileError(p, lineno, problem) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(p, lineno, f"not JSON ({exc.msg}); each line must be one object") from None
            task = _task_from_row(row, p, lineno, len(tasks))
            if task.id in first_line:
                problem = f'"id" {task.id!r} is also the id of line {first_line[task.id]}; ids must be unique'
                raise TaskFileError(p, lineno, problem)
            first_line[task.id] = lineno
            tasks.append(task)
            if n is not None and len(tasks) >= n:
                break
    if not tasks:
        problem = "no tasks (the file is empty or holds only blank lines); write one JSON object per line"
        raise TaskFileError(p, None, problem)
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
