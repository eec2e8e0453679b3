"""User datasets as JSONL: one ``{"question": ..., "answer": ...}`` object per line (e.g. MATH500 or
AIME files you have). Optional keys: ``id``, ``scorer`` (numeric | text). Answers that parse as
numbers are scored numerically unless the line says otherwise. Tools: python."""

from __future__ import annotations

import json
from pathlib import Path

from interleaf.agents.tasks.scoring import parse_number
from interleaf.agents.tasks.task import Task, TaskSuite

SYSTEM = "Use the python tool when it helps; print() results. Give only the final answer."


def load_jsonl_tasks(path: str | Path, n: int | None = None) -> list[Task]:
    """Read tasks from ``path``; the first ``n`` when given."""
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
                raise ValueError(f"{p}:{lineno}: not JSON ({exc.msg}); each line must be one object") from exc
            if not isinstance(row, dict) or "question" not in row:
                raise ValueError(f'{p}:{lineno}: needs a "question" key, got {str(row)[:80]!r}')
            answer = row.get("answer")
            answer = None if answer is None else str(answer)
            scorer = row.get("scorer") or ("numeric" if parse_number(answer) is not None else "text")
            tasks.append(
                Task(
                    id=str(row.get("id", f"{p.stem}-{len(tasks):04d}")),
                    question=str(row["question"]),
                    answer=answer,
                    scorer=scorer,
                    metadata={k: v for k, v in row.items() if k not in ("question", "answer", "id", "scorer")},
                )
            )
            if n is not None and len(tasks) >= n:
                break
    return tasks


def jsonl_suite(path: str | Path, n: int | None = None) -> TaskSuite:
    """A suite from a JSONL file, with the python tool."""

    def make_tools() -> list:
        from interleaf.tools import python_tool

        return [python_tool]

    tasks = load_jsonl_tasks(path, n)
    return TaskSuite(Path(path).stem, tasks, make_tools, SYSTEM, {"path": str(path), "n": n})


__all__ = ["jsonl_suite", "load_jsonl_tasks"]
