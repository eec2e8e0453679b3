"""``arith``: multi-step integer arithmetic (MATH-like), solved with the calculator tool.

Seeded and deterministic: the same (n, seed) gives the same tasks on every machine. Each question
is a nested expression of 2-5 operations over +, -, *, integer powers and ``mod``; the reference
answer is computed exactly with Python integers.

Exemplars: the generator run from its own seed string (``arith:exemplars``, a stream no integer
seed reaches), solved by one calculator call; any that equals an evaluated question is skipped.
"""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Exemplar, ExemplarStep, Task, TaskSuite

SYSTEM = "Compute with the calculator tool, then answer with the number it returned."
N_EXEMPLARS = 3


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


def arith_tasks(n: int, seed: int | str = 0) -> list[Task]:
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
                scorer="math",
                answer_type="number",
                metadata={"ops": ops, "expression": text},
            )
        )
    return tasks


def arith_exemplars(k: int = N_EXEMPLARS, avoid: set[str] | None = None) -> list[Exemplar]:
    """``k`` worked examples from the exemplar stream, none of whose questions is in ``avoid``: one
    calculator call on the question's expression, then its result as the answer. The first ones
    cover the suite's operators (a nested ``mod``, a power, a deep nesting), so that the model copies
    whole expressions rather than the shape of one example."""
    from interleaf.tools.builtin.calculator import evaluate

    wanted = [lambda e: "mod" in e and e.count("(") >= 2, lambda e: "^" in e, lambda e: e.count("(") >= 3]
    picked: list[Task] = []
    for task in arith_tasks(50 * k + len(avoid or ()), seed="exemplars"):
        expr = task.metadata["expression"]
        if task.question in (avoid or set()) or task.metadata["ops"] < 3 or task in picked:
            continue
        slot = len(picked)
        if slot >= len(wanted) or wanted[slot](expr):
            picked.append(task)
        if len(picked) == k:
            break
    out = []
    for task in picked:
        expression = task.metadata["expression"]
        result = str(evaluate(expression))
        step = ExemplarStep(tool="calculator", arguments={"expression": expression}, result=result)
        out.append(Exemplar(question=task.question, steps=[step], answer=result))
    return out


def arith_suite(n: int, seed: int = 0) -> TaskSuite:
    """The ``arith`` suite: the calculator tool."""

    def make_tools() -> list:
        from interleaf.tools import calculator

        return [calculator]

    tasks = arith_tasks(n, seed)
    exemplars = arith_exemplars(avoid={t.question for t in tasks})
    return TaskSuite("arith", tasks, make_tools, SYSTEM, {"n": n, "seed": seed}, exemplars)


__all__ = ["arith_exemplars", "arith_suite", "arith_tasks"]
