"""Tool arguments as JSON that every later step can take: read with Python's ``json`` but refusing
what it would let through or fail on with a bare exception, and checked once decoded.

Refused: ``NaN``/``Infinity`` and numbers that overflow to infinity (not JSON numbers; ``json.dumps``
writes them back as non-JSON), integers past Python's digit limit for ``int(str)`` (a bare
``ValueError``), nesting deeper than ``MAX_DEPTH`` (a bare ``RecursionError`` from the parser or from
any recursive step after it) and strings holding a lone surrogate (not Unicode text: encoding them,
to a sandbox, a log or the wire, raises). ``Toolset.call`` (``ToolArgumentError``) and
``call_format.parse_call`` (a format error) both use them.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from interleaf.text import surrogate_problem

__all__ = ["MAX_DEPTH", "ArgumentsError", "argument_problem", "loads"]

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted in arguments (the arguments object is level 1)."""


class ArgumentsError(ValueError):
    """The text is JSON that tools do not take (the message says what and where)."""


def _constant(name: str) -> Any:
    raise ArgumentsError(f"{name} is not a JSON number; send a finite number (or a string)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ArgumentsError(f"the number {text[:40]} is out of range for a 64-bit float (at most ~1.8e308)")
    return value


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        raise ArgumentsError(
            f"the integer {text[:20]}... has {digits} digits; the limit is {limit}: send it as a string"
        )
    return int(text)


def loads(text: str) -> Any:
    """``json.loads`` for arguments: ``json.JSONDecodeError`` for text that is not JSON,
    ``ArgumentsError`` for numbers tools do not take and nesting the parser cannot follow; check what
    it returns with ``argument_problem``."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise ArgumentsError(f"nested too deeply: the limit is {MAX_DEPTH} levels of objects and arrays") from None


def _path(parts: tuple[str | int, ...]) -> str:
    if len(parts) > 6:
        parts = (*parts[:4], "...", *parts[-1:])
    return ".".join(str(part) for part in parts)


def _surrogate(text: str) -> str | None:
    problem = surrogate_problem(text)
    if problem is None:
        return None
    return f"holds {problem}, which is not Unicode text; send the character itself (or a complete \\uXXXX\\uXXXX pair)"


def argument_problem(value: Any) -> tuple[str, str] | None:
    """The first part of decoded ``value`` that tools do not take, as (field path, what is wrong),
    the path dotted as in argument errors (``items.2.name``; ``""`` for ``value`` itself); None when
    all is well. Iterative, so any nesting is measured without recursion."""
    pending: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 1)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            if (problem := _surrogate(item)) is not None:
                return _path(path), f"the string {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return _path(path), f"{item!r} is not a JSON number; send a finite number"
        elif isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                return _path(path), f"nested more than {MAX_DEPTH} levels of objects and arrays deep"
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            for key, sub in reversed(children):  # popped in document order
                if isinstance(key, str) and (problem := _surrogate(key)) is not None:
                    return _path(path), f"the key {key!r} {problem}"
                pending.append((sub, (*path, key), depth + 1))
    return None
