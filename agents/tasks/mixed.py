"""``mixed``: questions needing facts from the corpus *and* computation (WebInstruct-like):
search + visit to find two facts, python to combine them."""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Task, TaskSuite
from interleaf.agents.tasks.world import corpus_tools, documents, make_towns

SYSTEM = "Find the facts with search and visit, compute with python, and answer with the number only."


def mixed_suite(n: int, seed: int = 0) -> TaskSuite:
    """``n`` two-fact numeric tasks over a corpus of ``max(2n, 20)`` towns."""
    towns = make_towns(max(2 * n, 20), seed)
    rng = random.Random(f"mixed:{seed}")
    tasks = []
    for i in range(n):
        a, b = rng.sample(towns, 2)
        kind = rng.choice(["years", "population_sum", "population_ratio"])
        if kind == "years":
            question = f"How many years after {a.name} was {b.name} founded? (Negative if before.)"
            value = str(b.founded - a.founded)
        elif kind == "population_sum":
            question = f"What is the combined population of {a.name} and {b.name}?"
            value = str(a.population + b.population)
        else:
            question = f"What is the population of {a.name} divided by that of {b.name}, rounded to 2 decimals?"
            value = f"{round(a.population / b.population, 2)}"
        tasks.append(
            Task(
                id=f"mixed-{i:04d}",
                question=question,
                answer=value,
                scorer="numeric",
                metadata={"towns": [a.name, b.name], "kind": kind},
            )
        )

    docs = documents(towns)

    def make_tools() -> list:
        from interleaf.tools import python_tool

        return [*corpus_tools(docs), python_tool]

    return TaskSuite("mixed", tasks, make_tools, SYSTEM, {"n": n, "seed": seed})


__all__ = ["mixed_suite"]
