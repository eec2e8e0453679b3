"""``lookup``: single-fact questions about a generated world, answered with search + visit
(SimpleQA-like). Distractor towns share the corpus, so the search has to find the right article."""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Task, TaskSuite
from interleaf.agents.tasks.world import corpus_tools, documents, make_towns

SYSTEM = "Search the encyclopedia, visit the right article, and answer with the exact fact only."

_QUESTIONS = [
    ("founded", "numeric", "In what year was the town of {name} founded?"),
    ("population", "numeric", "What was the population of {name} at the last census?"),
    ("river", "text", "On which river does the town of {name} lie?"),
    ("founder", "text", "Who founded the town of {name}?"),
    ("industry", "text", "What is the town of {name} known for?"),
]


def lookup_suite(n: int, seed: int = 0) -> TaskSuite:
    """``n`` lookup tasks over a corpus of ``max(2n, 20)`` towns."""
    towns = make_towns(max(2 * n, 20), seed)
    rng = random.Random(f"lookup:{seed}")
    tasks = []
    for i in range(n):
        town = towns[i]
        field_name, scorer, template = rng.choice(_QUESTIONS)
        tasks.append(
            Task(
                id=f"lookup-{i:04d}",
                question=template.format(name=town.name),
                answer=str(getattr(town, field_name)),
                scorer=scorer,
                metadata={"town": town.name, "field": field_name, "url": town.url},
            )
        )
    docs = documents(towns)
    return TaskSuite("lookup", tasks, lambda: corpus_tools(docs), SYSTEM, {"n": n, "seed": seed})


__all__ = ["lookup_suite"]
