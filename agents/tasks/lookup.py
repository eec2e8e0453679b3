"""``lookup``: single-fact questions about a generated world, answered with search (+ visit)
(SimpleQA-like). Distractor towns share the corpus, so the search has to find the right article.

Exemplars: a pool of one question per kind (founded, population, river, founder, industry) about
towns of their own (``world.exemplar_towns``: another stream, names unlike every evaluated town),
each solved by one real search call; their articles join the corpus. The agent shows the ones
nearest the question (``Agent.exemplar_choice``), so a founder question sees a founder example."""

from __future__ import annotations

import random

from interleaf.agents.tasks.task import Exemplar, ExemplarStep, Task, TaskSuite
from interleaf.agents.tasks.world import Town, corpus_tools, documents, exemplar_towns, make_towns

SYSTEM = "Search the encyclopedia for the town, read its article, and answer with the exact fact only."
EXEMPLAR_FIELDS = ("founded", "population", "river", "founder", "industry")

_QUESTIONS = [
    ("founded", "numeric", "In what year was the town of {name} founded?"),
    ("population", "numeric", "What was the population of {name} at the last census?"),
    ("river", "text", "On which river does the town of {name} lie?"),
    ("founder", "text", "Who founded the town of {name}?"),
    ("industry", "text", "What is the town of {name} known for?"),
]
_QUESTION_OF = {q[0]: q for q in _QUESTIONS}


def _task(i: int, town: Town, rng: random.Random, prefix: str, field: str | None = None) -> Task:
    field_name, kind, template = rng.choice(_QUESTIONS) if field is None else _QUESTION_OF[field]
    return Task(
        id=f"{prefix}-{i:04d}",
        question=template.format(name=town.name),
        answer=str(getattr(town, field_name)),
        scorer="math" if kind == "numeric" else "text",
        answer_type="number" if kind == "numeric" else "text",
        metadata={"town": town.name, "field": field_name, "url": town.url},
    )


def lookup_suite(n: int, seed: int = 0) -> TaskSuite:
    """``n`` lookup tasks over a corpus of ``max(2n, 20)`` towns (plus the exemplars' towns)."""
    towns = make_towns(max(2 * n, 20), seed)
    rng = random.Random(f"lookup:{seed}")
    tasks = [_task(i, towns[i], rng, "lookup") for i in range(n)]
    shots = exemplar_towns(len(EXEMPLAR_FIELDS), towns)
    docs = documents(towns + shots)
    search = corpus_tools(docs)[0]
    exemplars = []
    shot_rng = random.Random("lookup:exemplars")
    for i, (town, field_name) in enumerate(zip(shots, EXEMPLAR_FIELDS, strict=True)):
        task = _task(i, town, shot_rng, "exemplar", field_name)
        step = ExemplarStep(tool="search", arguments={"query": [town.name]}, result=search(query=[town.name]))
        exemplars.append(Exemplar(question=task.question, steps=[step], answer=str(task.answer)))
    return TaskSuite("lookup", tasks, lambda: corpus_tools(docs), SYSTEM, {"n": n, "seed": seed}, exemplars)


__all__ = ["lookup_suite"]
