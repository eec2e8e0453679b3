"""Automatic answer scoring: mathematical answers by HF's ``math-verify``, strings exactly or normalised.

Scorers (``Task.scorer``):

* ``math`` — ``math_verify.parse`` on both sides (LaTeX or plain: ``\\frac{1}{2}``, ``\\dfrac{1}{2}``,
  ``1/2``, ``0.5``, ``\\boxed{42}``, ``x=3``, ``2\\sqrt{3}``, ``2^{10}``), then: two integers are
  equal only when they are the same integer; other numbers are equal within a relative tolerance of
  1e-6 (so ``3.4641016`` ≡ ``2\\sqrt{3}``); anything else is ``math_verify.verify`` (symbolic
  equality, sets, intervals, equations). An answer math-verify cannot read scores 0 unless its
  normalised text equals the reference's. An answer that lists several candidates (``7 or 8``,
  ``1, 2, 3``) for a single-valued reference scores 0. ``numeric`` is the former name of this
  scorer and still accepted.
* ``text`` — case, punctuation and articles ignored; a short answer containing the reference counts,
  unless it also offers other candidates or negates it (``Paris or London``, ``not Paris``).
* ``exact`` — the stripped strings must be equal.

Scoring runs inside episodes, on an event loop that is not the main thread, so math-verify's
signal-based timeouts cannot be used (``parse`` and ``verify`` refuse to run off the main thread
with them). The cost is bounded instead by what is read: at most ``MAX_MATH_CHARS`` characters a
side, and no expression whose exact value would be huge (``9^{9^{9}}``) or whose symbolic powers
would be expanded at length (``(x+1)^{99999}``): such a side is not read as math.
"""

from __future__ import annotations

import functools
import logging
import re
import string
from fractions import Fraction
from typing import Any

SCORERS = ("math", "text", "exact")
"""The scorer names (``numeric`` is read as ``math``)."""

MAX_MATH_CHARS = 400
"""A side longer than this is not read as math (only its normalised text is compared)."""
_MAX_NODES = 400
"""Sympy nodes in one parsed side at most."""
_MAX_DIGITS = 10_000
"""A numeric sub-expression may be at most 10**_MAX_DIGITS in magnitude (its exact value is computed)."""
_MAX_SYMBOLIC_EXPONENT = 100
"""``(x+1)^n`` with a larger ``|n|`` is not read: comparing it expands it (n = 1000 took 3.5 s)."""

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_PLAIN_FRACTION = re.compile(r"[-+]?\d+\s*/\s*\d+")
_REL_TOL = 1e-6
_MINUS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-"})
"""Unicode minus signs, read as ``-``."""
# Where one candidate ends and another starts, outside brackets: a comma (not a thousands comma
# ``1,234`` nor LaTeX's thin space ``\,``), a semicolon (not ``\;``), "or" / "and", ``\quad``.
_SEPARATOR = re.compile(
    r"(?<![\\\d]),|(?<=\d),(?!\d{3}(?!\d))|(?<!\\);|\\text\{\s*(?:or|and)\s*\}|\\q?quad\b|(?<!\S)(?:or|and)(?!\S)",
    re.IGNORECASE,
)
_OPEN, _CLOSE = "([{", ")]}"
_SET = re.compile(r"\\\{(.*)\\\}", re.DOTALL)
_HEDGES = frozenset(
    {"or", "nor", "and", "not", "no", "never", "neither", "either", "except", "versus", "vs", "isnt", "arent", "wasnt"}
)
"""Words that make a text answer more than one candidate, or deny the one it names."""


def normalize_minus(text: str) -> str:
    """``text`` with Unicode minus signs (``−5``) written as ``-``."""
    return text.translate(_MINUS)


def _clean(text: str) -> str:
    return normalize_minus(text).strip()


def _plain_number(text: str) -> Fraction | float | None:
    """A bare number (``1,234``, ``-3.5``, ``1e-3``, ``2/3``): math-verify reads ``1e-3`` as 1, so
    these are read here first."""
    t = text.strip().strip("$").strip()
    if _PLAIN_FRACTION.fullmatch(t):
        try:
            return Fraction(t.replace(" ", ""))
        except ZeroDivisionError:
            return None
    if _PLAIN_NUMBER.fullmatch(t):
        return float(t.replace(",", "")) if ("e" in t.lower()) else Fraction(t.replace(",", ""))
    return None


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns once that it runs without its timeouts; this module bounds inputs instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@functools.cache
def _math_verify() -> Any:
    import math_verify  # ~0.3 s (sympy); only scorers pay it

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NoTimeoutWarning())
    return math_verify


def _separators(text: str) -> list[tuple[int, int, int]]:
    """Where ``text`` separates candidates (a comma, a semicolon, "or", "and", ``\\text{ or }``):
    (start, end, bracket depth) of each; ``(1, 2)`` and ``\\{3, 5\\}`` hold theirs at depth 1."""
    depth = _depths(text)
    return [(m.start(), m.end(), max(0, depth[m.start()])) for m in _SEPARATOR.finditer(text)]


def _depths(text: str) -> list[int]:
    """The bracket depth before each character of ``text`` (and after the last); negative where a
    bracket closes one that ``text`` did not open."""
    depth, level = [0] * (len(text) + 1), 0
    for i, ch in enumerate(text):
        depth[i] = level
        if ch in _OPEN:
            level += 1
        elif ch in _CLOSE:
            level -= 1
    depth[len(text)] = level
    return depth


def _items(text: str) -> list[str]:
    """The candidates ``text`` lists, split at its separators outside brackets (``3, 5`` → ``3``,
    ``5``); a set written ``\\{3, 5\\}`` lists its members."""
    inner = _SET.fullmatch(text)
    members = "" if inner is None else inner[1]
    # `\{1, 2\}` is one set; `\{1, 2\} \cup \{3\}` only starts and ends like one.
    balanced = bool(members) and min(_depths(members)) == 0 == _depths(members)[-1]
    if balanced and any(d == 0 for _, _, d in _separators(members)):
        text = members
    items, at = [], 0
    for start, end, depth in _separators(text):
        if depth == 0:
            items.append(text[at:start].strip())
            at = end
    items.append(text[at:].strip())
    return [i for i in items if i] or [text]


def _affordable(parsed: list[Any]) -> bool:
    """Whether comparing ``parsed`` stays cheap (see the module docstring)."""
    import sympy

    limit = sympy.Float(10) ** _MAX_DIGITS
    for value in parsed:
        if isinstance(value, str):
            continue
        items = list(value) if isinstance(value, sympy.MatrixBase) else [value]
        nodes = 0
        for item in items:
            if not isinstance(item, sympy.Basic):
                continue
            # Children first: a tower's inner power is judged before anything evaluates the outer one.
            for node in sympy.postorder_traversal(item):
                nodes += 1
                if nodes > _MAX_NODES:
                    return False
                if node.is_Atom:
                    continue
                if node.is_number:
                    try:
                        size = abs(node.evalf(15))
                    except Exception:  # sympy's own failures: leave it to the comparison
                        continue
                    if size.is_finite and size > limit:
                        return False
                elif node.is_Pow and node.exp.is_number:
                    try:
                        if abs(node.exp.evalf(15)) > _MAX_SYMBOLIC_EXPONENT:
                            return False
                    except (TypeError, ValueError):
                        return False
    return True


def parse_math(text: str | None) -> list[Any]:
    """``text`` as math-verify reads it: ``[sympy object, string]``, or ``[]`` when it holds no math
    (or is too long or too costly to compare: see the module docstring). Bare LaTeX (no ``$``,
    with a backslash or braces: ``\\frac12``, ``2^{10}``) is read as LaTeX."""
    if not text or not text.strip():
        return []
    t = _clean(text)
    if len(t) > MAX_MATH_CHARS:
        return []
    if (plain := _plain_number(t)) is not None:
        import sympy

        return [sympy.Rational(plain.numerator, plain.denominator) if isinstance(plain, Fraction)
                else sympy.Float(plain), t]  # fmt: skip
    mv = _math_verify()
    configs = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    parsed: list[Any] = []
    # Without ``$`` math-verify reads "2^{10}" as plain text and finds the number 2 in it.
    if ("\\" in t or "{" in t) and "$" not in t and "\\boxed" not in t:
        parsed = mv.parse(f"${t}$", extraction_config=configs, parsing_timeout=None)
    if not parsed:
        parsed = mv.parse(t, extraction_config=configs, parsing_timeout=None)
    return parsed if parsed and _affordable(parsed) else []


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


def _as_integer(parsed: list[Any]) -> int | None:
    """The parsed value as an exact integer when it is one (``1024``, ``2^{10}``, ``\\frac{4}{2}``),
    else None (``1e3`` read as a float is not exact)."""
    value = parsed[0]
    try:
        if not getattr(value, "is_number", False) or value.is_Float:
            return None
        exact = value.doit()  # bounded: _affordable refused huge values
        return int(exact) if exact.is_Integer else None
    except (TypeError, ValueError, AttributeError):
        return None


def parse_number(text: str | None) -> float | None:
    """The number ``text`` holds, read as math (``1,234``, ``-3.5``, ``\\frac{2}{3}``,
    ``\\boxed{..}``, ``2\\sqrt{3}``), else None."""
    value = _as_number(parse_math(text))
    return None if value is None or value.imag else value.real


def math_equal(answer: str, expected: str) -> bool:
    """Whether ``answer`` is mathematically ``expected`` (see the module docstring)."""
    answer, expected = _clean(answer), _clean(expected)
    got, want = _items(answer), _items(expected)
    if len(got) > 1 or len(want) > 1:
        # A list against a list: the same members in any order ("1, -2" for "-2, 1"). Several
        # candidates for one value ("7 or 8"), or one of a list's members, is not equal: math-verify
        # would read only the last number of each.
        if len(got) != len(want):
            return False
        left = list(want)
        for item in got:
            match = next((i for i, w in enumerate(left) if _value_equal(item, w)), None)
            if match is None:
                return False
            left.pop(match)
        return True
    return _value_equal(answer, expected)


def _value_equal(answer: str, expected: str) -> bool:
    gold, pred = parse_math(expected), parse_math(answer)
    if not gold or not pred:
        return bool(normalize_text(answer)) and normalize_text(answer) == normalize_text(expected)
    g, p = _as_number(gold), _as_number(pred)
    if g is not None and p is not None:
        gi, pi = _as_integer(gold), _as_integer(pred)
        if gi is not None and pi is not None:
            return gi == pi  # a relative tolerance would take 1000001 for 1000000
        return abs(g - p) <= max(_REL_TOL * max(abs(g), abs(p)), 1e-12)
    try:
        return bool(_math_verify().verify(gold, pred, timeout_seconds=None))
    except Exception:  # sympy failures on odd input: not equal
        return False


def normalize_text(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (SQuAD-style)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _text_equal(answer: str, expected: str) -> bool:
    got_n, want_n = normalize_text(answer), normalize_text(expected)
    if got_n == want_n:
        return True
    if not want_n:
        return False
    got, want = got_n.split(), want_n.split()
    # A short answer that contains the reference counts ("in 1742" for "1742"); a long one does
    # not, nor one that offers other candidates or denies it ("Paris or London", "not Paris").
    if len(got) > len(want) + 4:
        return False
    at = next((i for i in range(len(got) - len(want) + 1) if got[i : i + len(want)] == want), None)
    if at is None:
        return False
    extra = got[:at] + got[at + len(want) :]
    if any(w in _HEDGES for w in extra):
        return False
    return len(_items(_clean(answer))) <= len(_items(_clean(expected)))


def check_scorer(scorer: str) -> str:
    """The scorer's canonical name; ValueError naming the choices otherwise."""
    if scorer == "numeric":
        return "math"
    if not isinstance(scorer, str) or scorer not in SCORERS:
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
    return float(_text_equal(answer, expected))


__all__ = [
    "MAX_MATH_CHARS",
    "SCORERS",
    "check_scorer",
    "math_equal",
    "normalize_minus",
    "normalize_text",
    "parse_math",
    "parse_number",
    "score_answer",
]
