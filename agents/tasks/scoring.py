"""Automatic answer scoring: mathematical answers by HF's ``math-verify``, strings exactly or normalised.

Scorers (``Task.scorer``):

* ``math`` — ``math_verify.parse`` on both sides (LaTeX or plain: ``\\frac{1}{2}``, ``\\dfrac{1}{2}``,
  ``1/2``, ``0.5``, ``\\boxed{42}``, ``x=3``, ``2\\sqrt{3}``), then: two numbers are equal within a
  relative tolerance of 1e-6 (so ``3.4641016`` ≡ ``2\\sqrt{3}``); anything else is
  ``math_verify.verify`` (symbolic equality, sets, intervals, equations). An answer math-verify
  cannot read scores 0 unless its normalised text equals the reference's. ``numeric`` is the
  former name of this scorer and still accepted.
* ``text`` — case, punctuation and articles ignored; a short answer containing the reference counts.
* ``exact`` — the stripped strings must be equal.
"""

from __future__ import annotations

import functools
import re
import string
from fractions import Fraction
from typing import Any

SCORERS = ("math", "text", "exact")
"""The scorer names (``numeric`` is read as ``math``)."""

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_PLAIN_FRACTION = re.compile(r"[-+]?\d+\s*/\s*\d+")
_REL_TOL = 1e-6


def _plain_number(text: str) -> Fraction | float | None:
    """A bare number (``1,234``, ``-3.5``, ``1e-3``, ``2/3``): math-verify reads ``1e-3`` as 1 and
    ``2,5`` as 2.5, so these are read here first."""
    t = text.strip().strip("$").strip()
    if _PLAIN_FRACTION.fullmatch(t):
        try:
            return Fraction(t.replace(" ", ""))
        except ZeroDivisionError:
            return None
    if _PLAIN_NUMBER.fullmatch(t):
        return float(t.replace(",", "")) if ("e" in t.lower()) else Fraction(t.replace(",", ""))
    return None


@functools.cache
def _math_verify() -> Any:
    import math_verify  # ~0.3 s (sympy); only scorers pay it

    return math_verify


def parse_math(text: str | None) -> list[Any]:
    """``text`` as math-verify reads it: ``[sympy object, string]``, or ``[]`` when it holds no math.
    Bare LaTeX (no ``$``) is read as LaTeX."""
    if not text or not text.strip():
        return []
    if (plain := _plain_number(text)) is not None:
        import sympy

        return [sympy.Rational(plain.numerator, plain.denominator) if isinstance(plain, Fraction)
                else sympy.Float(plain), text.strip()]  # fmt: skip
    mv = _math_verify()
    configs = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    if "\\" in text and "$" not in text and "\\boxed" not in text:
        parsed = mv.parse(f"${text}$", extraction_config=configs)
        if parsed:
            return parsed
    return mv.parse(text, extraction_config=configs)


def _as_number(parsed: list[Any]) -> complex | None:
    """The parsed value as a number when it is one (no free symbols), else None."""
    if not parsed:
        return None
    value = parsed[0]
    try:
        if not getattr(value, "is_number", False):
            return None
        return complex(value.evalf(30))
    except (TypeError, ValueError, AttributeError):
        return None


def parse_number(text: str | None) -> float | None:
    """The number ``text`` holds, read as math (``1,234``, ``-3.5``, ``\\frac{2}{3}``,
    ``\\boxed{..}``, ``2\\sqrt{3}``), else None."""
    value = _as_number(parse_math(text))
    return None if value is None or value.imag else value.real


def math_equal(answer: str, expected: str) -> bool:
    """Whether ``answer`` is mathematically ``expected`` (see the module docstring)."""
    gold, pred = parse_math(expected), parse_math(answer)
    if not gold or not pred:
        return bool(normalize_text(answer)) and normalize_text(answer) == normalize_text(expected)
    g, p = _as_number(gold), _as_number(pred)
    if g is not None and p is not None:
        return abs(g - p) <= max(_REL_TOL * max(abs(g), abs(p)), 1e-12)
    try:
        return bool(_math_verify().verify(gold, pred))
    except Exception:  # math-verify's own timeouts and sympy failures: not equal
        return False


def normalize_text(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (SQuAD-style)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def check_scorer(scorer: str) -> str:
    """The scorer's canonical name; ValueError naming the choices otherwise."""
    if scorer == "numeric":
        return "math"
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
    return scorer


def score_answer(answer: str | None, expected: str, scorer: str = "text") -> float:
    """1.0 if ``answer`` matches ``expected`` under ``scorer`` (``math`` | ``text`` | ``exact``), else 0.0."""
    scorer = check_scorer(scorer)
    if answer is None:
        return 0.0
    if scorer == "math":
        return float(math_equal(answer, expected))
    if scorer == "exact":
        return float(answer.strip() == expected.strip())
    got_n, want_n = normalize_text(answer), normalize_text(expected)
    if not want_n:
        return float(got_n == want_n)
    # A short answer that contains the reference counts ("in 1742" for "1742"); a long one does not,
    # or listing every candidate would score.
    contained = f" {want_n} " in f" {got_n} " and len(got_n.split()) <= len(want_n.split()) + 4
    return float(got_n == want_n or contained)


__all__ = ["SCORERS", "check_scorer", "math_equal", "normalize_text", "parse_math", "parse_number", "score_answer"]
