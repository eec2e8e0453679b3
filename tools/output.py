"""Rendering a tool's return value as text and capping it in tokens."""

from __future__ import annotations

import decimal
import json
import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from interleaf.text import lone_surrogate

__all__ = ["render_output", "shown_text", "truncate_tokens"]

_MAX_INT_DIGITS = 100_000
"""Integers up to this many digits are written out in full (past Python's 4300-digit ``str`` limit,
through ``decimal``: 0.2 s at the cap); longer ones are described."""
_MAX_CHARS_PER_TOKEN = 16
"""Characters a token covers at most, for cutting: the head and the tail kept are searched for in this
many characters per token of text, not in all of it (a real tokenizer's count of 1 MB takes ~60 ms)."""


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # past sys.get_int_max_str_digits()
        pass
    digits = int((abs(value).bit_length() - 1) * math.log10(2)) + 1
    if digits <= _MAX_INT_DIGITS:
        return str(decimal.Decimal(value))
    return f"<an integer of about {digits} digits, too long to write out>"


def _float_text(value: float) -> str | float:
    """Non-finite floats as JSON strings ("NaN", "Infinity", "-Infinity"): JSON has no such numbers."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _plain(value: Any) -> Any:
    """``value`` with what ``json.dumps`` cannot write as JSON made into strings: non-finite floats,
    integers past Python's digit limit, keys that are not strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # past sys.get_int_max_str_digits(): json.dumps would raise too
            return _int_text(value)
        return value
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def render_output(value: Any) -> str:
    """Text for the model: strings as they are, models and containers as JSON (NaN, infinities and
    integers past 4300 digits as strings, so it stays JSON), ``None`` as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    if isinstance(value, float):
        text = _float_text(value)
        return text if isinstance(text, str) else json.dumps(text)
    if isinstance(value, dict | list | tuple | bool):
        try:
            return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
        except (TypeError, ValueError):  # a non-finite float, a huge integer, a key json cannot write
            return json.dumps(_plain(value), ensure_ascii=False, default=str, allow_nan=False)
    return str(value)


def shown_text(text: str) -> str:
    """``text`` with lone surrogates (not Unicode; nothing can encode them) replaced by U+FFFD."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _longest_prefix(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _longest_suffix(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[len(text) - mid :]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :]


def truncate_tokens(text: str, max_tokens: int | None, count: Callable[[str], int]) -> tuple[str, bool]:
    """Keep the beginning and the end of ``text`` within ``max_tokens`` (half each), with a visible
    marker where the middle was cut: an error's last lines (a traceback, an exit status) are at its end.

    Only a counter is assumed (no encode/decode), so the cut points are found by bisection over
    characters: O(log n) counts, each of at most ``_MAX_CHARS_PER_TOKEN`` characters per token
    kept. A text longer than four such windows is taken to be over the cap without counting it all,
    and the tokens cut are estimated ("about N").
    """
    if max_tokens is None:
        return text, False
    window = max_tokens * _MAX_CHARS_PER_TOKEN
    huge = len(text) > 4 * window
    total = None if huge else count(text)
    if total is not None and total <= max_tokens:
        return text, False
    head_budget = max_tokens // 2
    head = _longest_prefix(text[:window], head_budget, count)
    tail = _longest_suffix(text[len(head) :][-window:], max_tokens - head_budget, count)
    kept = count(head) + count(tail)
    middle = len(text) - len(head) - len(tail)
    if total is not None:
        cut = f"{total - kept} tokens"
    else:
        per_char = kept / max(1, len(head) + len(tail))
        cut = f"about {round(middle * per_char)} tokens"
    return f"{head}\n[... truncated: {cut} left out ...]\n{tail}", True
