"""Rendering a tool's return value as text and capping it in tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["render_output", "truncate_tokens"]


def render_output(value: Any) -> str:
    """Text for the model: strings as they are, models and containers as JSON, ``None`` as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict | list | tuple | bool | int | float):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def truncate_tokens(text: str, max_tokens: int | None, count: Callable[[str], int]) -> tuple[str, bool]:
    """Keep the longest prefix of ``text`` within ``max_tokens`` and append a visible marker.

    Only a counter is assumed (no encode/decode), so the cut point is found by bisection over
    characters: O(log n) counts.
    """
    if max_tokens is None:
        return text, False
    total = count(text)
    if total <= max_tokens:
        return text, False
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    kept = text[:lo]
    return f"{kept}\n[... truncated: {total - count(kept)} more tokens]", True
