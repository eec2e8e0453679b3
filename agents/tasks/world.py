"""A small fictional world (towns with facts) and its encyclopedia, for the search-based suites.

Fictional on purpose: the model cannot know the answers from pre-training, so a correct answer
needs the search and visit tools. Deterministic from the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_SYL = ["ka", "ve", "lor", "min", "dra", "sol", "ten", "bru", "qua", "fel", "zor", "ith", "mar", "oth", "pel", "run"]
_FIRST = ["Ada", "Boris", "Clara", "Dmitri", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lev"]
_REGIONS = ["Northmarch", "Eastvale", "the Saltlands", "Highmoor", "the Reed Coast", "Westfold"]
_INDUSTRY = ["glassmaking", "salt mining", "shipbuilding", "weaving", "clockmaking", "tea trading"]


@dataclass(frozen=True)
class Town:
    name: str
    slug: str
    founded: int
    population: int
    river: str
    founder: str
    region: str
    industry: str

    @property
    def url(self) -> str:
        return f"https://wiki.interleaf.local/{self.slug}"

    def article(self) -> str:
        return (
            f"{self.name} is a town in {self.region}, on the banks of the {self.river} river. "
            f"It was founded in {self.founded} by {self.founder}. "
            f"The town is known for {self.industry}. "
            f"At the last census {self.name} had a population of {self.population}."
        )


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()


def make_towns(n: int, seed: int | str) -> list[Town]:
    """``n`` towns with distinct names from ``seed``."""
    rng = random.Random(f"world:{seed}")
    towns: list[Town] = []
    names: set[str] = set()
    while len(towns) < n:
        name = _word(rng, rng.randint(2, 3))
        if name in names:
            continue
        names.add(name)
        towns.append(
            Town(
                name=name,
                slug=name.lower(),
                founded=rng.randint(1100, 1950),
                population=rng.randint(800, 250_000),
                river=_word(rng, 2),
                founder=f"{rng.choice(_FIRST)} {_word(rng, 2)}",
                region=rng.choice(_REGIONS),
                industry=rng.choice(_INDUSTRY),
            )
        )
    return towns


def exemplar_towns(k: int, world: list[Town]) -> list[Town]:
    """``k`` towns for worked examples, from their own stream (``world:exemplars``) and named
    unlike every town of ``world``, so no example shares a town with an evaluated task. Their
    articles join the corpus (the examples' tool calls are real ones)."""
    taken = {t.name for t in world}
    return [t for t in make_towns(k + len(world), "exemplars") if t.name not in taken][:k]


def documents(towns: list[Town]) -> list[dict[str, str]]:
    """One encyclopedia article per town, as ``{"url", "title", "text"}``."""
    return [{"url": t.url, "title": t.name, "text": t.article()} for t in towns]


def corpus_tools(docs: list[dict[str, str]]) -> list:
    """``search`` and ``visit`` over ``docs`` (imports interleaf.tools only when called)."""
    from interleaf.tools import Corpus, Document, make_corpus_tools

    return list(make_corpus_tools(Corpus(documents=[Document(**d) for d in docs])))


__all__ = ["Town", "corpus_tools", "documents", "exemplar_towns", "make_towns"]
