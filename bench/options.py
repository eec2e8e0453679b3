"""Command-line options of the benchmarks: the parser every bench uses and the checked value types.

The rule for bench/: a bad option is one line on stderr naming the option and its value, exit status 2,
no traceback, and before anything (an engine, Ray, a server) starts. ``BenchParser`` prints argparse's
errors that way (as ``interleaf engine serve`` does), and the types below refuse a bad value while the
command line is parsed, so no check can run late:

    p = BenchParser(description=...)
    p.add_argument("--n", type=int_at_least(1), default=50)
    p.add_argument("--arms", type=comma_list(one_of(ARMS)), default=list(ARMS))
    args = p.parse_args(argv)
    if args.lo > args.hi:
        p.fail("--decode", f"{args.lo} {args.hi}", "MIN must be <= MAX")   # checks across options

``python bench/agents.py --n 0`` then prints
``bench/agents.py: argument --n: '0' is not an integer >= 1 (see 'python bench/agents.py --help')``.
Imported as ``from options import ...``: the benches run as scripts, which puts bench/ on ``sys.path``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class BenchParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prog", f"bench/{Path(sys.argv[0]).name}")
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see 'python {self.prog} --help')\n")

    def fail(self, option: str, value: object, why: str) -> NoReturn:
        """A bad value found by a check across options (or against what the options imply)."""
        self.error(f"{option} {value}: {why}")


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer option in ``[low, high]``."""
    bound = f">= {low}" if high is None else f"between {low} and {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {bound}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {bound}")
        return value

    return parse


def number_above(low: float, *, inclusive: bool = False) -> Callable[[str], float]:
    """A finite number option ``> low`` (``>= low`` with ``inclusive``)."""
    bound = f"{'>=' if inclusive else '>'} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number {bound}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number {bound}")
        return value

    return parse


def one_of(choices: Iterable[str]) -> Callable[[str], str]:
    """One of ``choices`` (for items of a ``comma_list``; a single option takes ``choices=``)."""
    known = tuple(choices)

    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(known)}")
        return text

    return parse


def comma_list(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """A comma-separated, non-empty list, each item parsed (and checked) by ``item``."""

    def parse(text: str) -> list[T]:
        parts = text.split(",")
        if any(not p.strip() for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give a comma-separated list")
        return [item(p.strip()) for p in parts]

    return parse


def gpu_profile(text: str) -> str:
    """The name of a built-in hardware profile (``interleaf.telemetry``) or ``cpu``, kept as given."""
    from interleaf.telemetry import find_hardware_profile

    if text.lower() == "cpu":  # a measured profile of this machine: valid, and not worth measuring here
        return text
    try:
        find_hardware_profile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_profile(text: str) -> str:
    """The name of a shipped model profile (``interleaf.telemetry``), kept as given."""
    from interleaf.telemetry import MODEL_PROFILES, find_model_profile

    if find_model_profile(text) is None:
        known = ", ".join(MODEL_PROFILES)
        raise argparse.ArgumentTypeError(f"{text!r} has no shipped model profile; use one of {known}")
    return text


__all__ = ["BenchParser", "comma_list", "gpu_profile", "int_at_least", "model_profile", "number_above", "one_of"]
