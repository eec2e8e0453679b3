"""``mixed``: questions needing facts from the corpus *and* computation (WebInstruct-like):
search (+ visit) to find two facts, the calculator to combine them.

Exemplars: a pool of one question per kind (years, population sum, population ratio) about towns
of their own (``world.exemplar_towns``), each solved by one real search for both towns (in the
order the calculation uses them) and one calculator call (the ratio rounded by ``round(x, 2)``, as
the question asks); their articles join the corpus. The agent shows the ones nearest the question
(``Agent.exemplar_choice``)."""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Exemplar, ExemplarStep, Task, TaskSuite
from interleaf.agents.tasks.world import Town, corpus_tools, documents, exemplar_towns, make_towns

SYSTEM = "Find the facts with search, combine them with the calculator, and answer with the number only."
_KINDS = ["years", "population_sum", "population_ratio"]


def _task(i: int, a: Town, b: Town, kind: str, prefix: str) -> tuple[Task, str]:
    """The task and the calculator expression that solves it."""
    if kind == "years":
        question = f"How many years after {a.name} was {b.name} founded? (Negative if before.)"
        value, expression = str(b.founded - a.founded), f"{b.founded} - {a.founded}"
    elif kind == "population_sum":
        question = f"What is the combined population of {a.name} and {b.name}?"
        value, expression = str(a.population + b.population), f"{a.population} + {b.population}"
    else:
        question = f"What is the population of {a.name} divided by that of {b.name}, rounded to 2 decimals?"
        value, expression = f"{round(a.population / b.population, 2)}", f"round({a.population} / {b.population}, 2)"
    task = Task(id=f"{prefix}-{i:04d}", question=question, answer=value, scorer="math", answer_type="number",
                metadata={"towns": [a.name, b.name], "kind": kind})  # fmt: skip
    return task, expression


def mixed_suite(n: int, seed: int = 0) -> TaskSuite:
    """``n`` two-fact numeric tasks over a corpus of ``max(2n, 20)`` towns (plus the exemplars' towns)."""
    towns = make_towns(max(2 * n, 20), seed)
    rng = random.Random(f"mixed:{seed}")
    tasks = []
    for i in range(n):
        a, b = rng.sample(towns, 2)
        tasks.append(_task(i, a, b, rng.choice(_KINDS), "mixed")[0])

    shots = exemplar_towns(2 * len(_KINDS), towns)
    docs = documents(towns + shots)

    def make_tools() -> list:
        from interleaf.tools import calculator

        return [*corpus_tools(docs), calculator]

    from interleaf.tools.builtin.calculator import evaluate

    search = corpus_tools(docs)[0]
    exemplars = []
    for i, kind in enumerate(_KINDS):
        a, b = shots[2 * i : 2 * i + 2]
        task, expression = _task(i, a, b, kind, "exemplar")
        result = str(evaluate(expression))
        # Searched in the order the expression uses the facts: the model copies positions (first
        # result's number first), so "B - A" is shown after searching B, then A.
        query = [b.name, a.name] if kind == "years" else [a.name, b.name]
        steps = [
            ExemplarStep(tool="search", arguments={"query": query}, result=search(query=query)),
            ExemplarStep(tool="calculator", arguments={"expression": expression}, result=result),
        ]
        exemplars.append(Exemplar(question=task.question, steps=steps, answer=str(task.answer)))
    return TaskSuite("mixed", tasks, make_tools, SYSTEM, {"n": n, "seed": seed}, exemplars)


__all__ = ["mixed_suite"]
