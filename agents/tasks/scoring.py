"""Automatic answer scoring: numbers compared as numbers, text normalised before comparison."""

from __future__ import annotations

import math
import re
import string
from fractions import Fraction

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?")


def parse_number(text: str | None) -> float | None:
    """The last number in ``text`` (``1,234``, ``-3.5``, ``2/3``, ``1e-3``, ``\\boxed{..}``), else None."""
    if not text:
        return None
    if m := _BOXED.search(text):
        text = m.group(1)
    matches = _NUMBER.findall(text.replace("$", ""))
    if not matches:
        return None
    token = matches[-1].replace(",", "").replace(" ", "")
    try:
        return float(Fraction(token)) if "/" in token else float(token)
    except (ValueError, ZeroDivisionError):
        return None


def normalize_text(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (SQuAD-style)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def score_answer(answer: str | None, expected: str, scorer: str = "text") -> float:
    """1.0 if ``answer`` matches ``expected`` under ``scorer`` (``numeric`` | ``text``), else 0.0."""
    if answer is None:
        return 0.0
    if scorer == "numeric":
        got, want = parse_number(answer), parse_number(expected)
        if got is None or want is None:
            return float(normalize_text(answer) == normalize_text(expected))
        return float(math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9))
    if scorer != "text":
        raise ValueError(f"scorer must be 'numeric' or 'text', got {scorer!r}")
    got_n, want_n = normalize_text(answer), normalize_text(expected)
    if not want_n:
        return float(got_n == want_n)
    # A short answer that contains the reference counts ("in 1742" for "1742"); a long one does not,
    # or listing every candidate would score.
    contained = f" {want_n} " in f" {got_n} " and len(got_n.split()) <= len(want_n.split()) + 4
    return float(got_n == want_n or contained)


__all__ = ["normalize_text", "parse_number", "score_answer"]
