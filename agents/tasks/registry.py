"""Suite names -> generators; ``load_suite`` resolves a name or a JSONL path."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from interleaf.agents.tasks.arith import arith_suite
from interleaf.agents.tasks.jsonl import jsonl_suite
from interleaf.agents.tasks.lookup import lookup_suite
from interleaf.agents.tasks.mixed import mixed_suite
from interleaf.agents.tasks.task import TaskSuite

SuiteFactory = Callable[[int, int], TaskSuite]
"""``factory(n, seed) -> TaskSuite``."""

BUILTIN_SUITES: dict[str, SuiteFactory] = {
    "arith": arith_suite,
    "lookup": lookup_suite,
    "mixed": mixed_suite,
}
"""The suites every process knows without registering them."""

SUITES: dict[str, SuiteFactory] = dict(BUILTIN_SUITES)
"""The suites this process knows: the built-in ones and those added with ``register_suite``."""


def register_suite(name: str, factory: SuiteFactory) -> None:
    """Make ``factory(n, seed) -> TaskSuite`` available as ``--suite name``. Jobs started from this
    process take it to their Ray actors (``registered_suites``)."""
    SUITES[name] = factory


def registered_suites() -> dict[str, SuiteFactory]:
    """The suites registered in this process that are not the built-in ones (added, or a built-in
    name registered again): what a job's driver sends its actors, whose processes have not run the
    registration."""
    return {name: f for name, f in SUITES.items() if BUILTIN_SUITES.get(name) is not f}


def load_suite(name: str, n: int, seed: int = 0, *, factories: Mapping[str, SuiteFactory] | None = None) -> TaskSuite:
    """The suite called ``name`` (arith | lookup | mixed | registered), or a ``.jsonl`` file path.
    ``factories`` (suites registered in another process, e.g. a job's driver) take precedence over
    this process's registry."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if name.endswith(".jsonl"):
        return jsonl_suite(name, n)
    factory = (factories or {}).get(name) or SUITES.get(name)
    if factory is None:
        known = sorted({*SUITES, *(factories or {})})
        raise ValueError(f"unknown suite {name!r}; choose one of {known} or pass a .jsonl file path")
    return factory(n, seed)


__all__ = ["BUILTIN_SUITES", "SUITES", "SuiteFactory", "load_suite", "register_suite", "registered_suites"]
