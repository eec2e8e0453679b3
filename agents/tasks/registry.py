"""Suite names -> generators; ``load_suite`` resolves a name or a JSONL path."""

from __future__ import annotations

from collections.abc import Callable

from interleaf.agents.tasks.arith import arith_suite
from interleaf.agents.tasks.jsonl import jsonl_suite
from interleaf.agents.tasks.lookup import lookup_suite
from interleaf.agents.tasks.mixed import mixed_suite
from interleaf.agents.tasks.task import TaskSuite

SUITES: dict[str, Callable[[int, int], TaskSuite]] = {
    "arith": arith_suite,
    "lookup": lookup_suite,
    "mixed": mixed_suite,
}


def register_suite(name: str, factory: Callable[[int, int], TaskSuite]) -> None:
    """Make ``factory(n, seed) -> TaskSuite`` available as ``--suite name``."""
    SUITES[name] = factory


def load_suite(name: str, n: int, seed: int = 0) -> TaskSuite:
    """The suite called ``name`` (arith | lookup | mixed | registered), or a ``.jsonl`` file path."""
    if name.endswith(".jsonl"):
        return jsonl_suite(name, n)
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {sorted(SUITES)} or pass a .jsonl file path")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return SUITES[name](n, seed)


__all__ = ["SUITES", "load_suite", "register_suite"]
