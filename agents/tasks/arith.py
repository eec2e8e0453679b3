"""``arith``: multi-step integer arithmetic (MATH-like), solved with the python tool.

Seeded and deterministic: the same (n, seed) gives the same tasks on every machine. Each question
is a nested expression of 2-5 operations over +, -, *, integer powers and ``mod``; the reference
answer is computed exactly with Python integers.
"""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Task, TaskSuite

SYSTEM = "Use the python tool to compute exact values; print() the result. Answer with just the number."


def _expr(rng: random.Random, ops: int) -> tuple[str, int]:
    if ops == 0:
        v = rng.randint(2, 99)
        return str(v), v
    left_ops = rng.randint(0, ops - 1)
    (ls, lv), (rs, rv) = _expr(rng, left_ops), _expr(rng, ops - 1 - left_ops)
    op = rng.choice(["+", "-", "*", "*", "^", "mod"])
    if op == "^":
        exp = rng.randint(2, 3)
        return f"({ls})^{exp}", lv**exp
    if op == "mod":
        m = rng.randint(3, 97)
        return f"({ls} mod {m})", lv % m
    value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]
    return f"({ls} {op} {rs})", value


def arith_tasks(n: int, seed: int = 0) -> list[Task]:
    """``n`` arithmetic tasks from ``seed``."""
    rng = random.Random(f"arith:{seed}")
    tasks = []
    for i in range(n):
        ops = rng.randint(2, 5)
        text, value = _expr(rng, ops)
        text = text[1:-1] if text.startswith("(") and text.endswith(")") and text.count("(") == 1 else text
        tasks.append(
            Task(
                id=f"arith-{i:04d}",
                question=f"Compute {text}. Here ^ is exponentiation and mod is the remainder.",
                answer=str(value),
                scorer="numeric",
                metadata={"ops": ops, "expression": text},
            )
        )
    return tasks


def arith_suite(n: int, seed: int = 0) -> TaskSuite:
    """The ``arith`` suite: python tool only."""

    def make_tools() -> list:
        from interleaf.tools import python_tool

        return [python_tool]

    return TaskSuite("arith", arith_tasks(n, seed), make_tools, SYSTEM, {"n": n, "seed": seed})


__all__ = ["arith_suite", "arith_tasks"]
