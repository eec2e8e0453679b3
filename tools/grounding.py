"""Grounded numbers: numeric literals in tool arguments restricted to numbers the conversation holds.

A small model copying ``(18 * (55 - 80))`` into a calculator call writes well-formed arithmetic
that is not the question's: it repeats a sub-expression (``(18 * (55 - 80)) * (18 * (55 - 80))``),
or invents a number. A grammar that lets it write only the numbers that appear in the
conversation (the question and the episode's tool outputs), each **at most as often as it appears
there**, removes both: once every number is used, the expression can only close.

``ground_pattern_ebnf`` builds that grammar for a string argument whose ``pattern`` is a repetition
of units (``^(?:[0-9.+\\-*/%^() ]|mod)+$``, ``[a-z0-9 ]+``: the common "what characters may this
hold" pattern): the units without digits and ``.`` separate the numbers, and the numbers are the
grounded ones. Once every number is used, only closing brackets (``)]}``, those the units allow) may
follow. Counting uses one grammar state per combination of numbers used, so it is kept while
that product stays at most ``MAX_STATES``; beyond it (a search result full of numbers) every
grounded number may be written any number of times. Between two numbers at most ``MAX_UNITS``
units. Integer and number arguments
are grounded by ``grounded_values``. Patterns of other shapes are left as they are.

Arithmetic written out in the question (``expressions_in``: ``4 mod 48``, ``((31 mod 34) * 17)``)
is grounded as a whole: with ``expressions``, such a span is one more unit, copied verbatim or not
at all, and its numbers are not offered on their own. A small model that retypes ``4 mod 48``
writes ``4 * (48)``: grounding the numbers alone leaves every operator and every bracket free.
Numbers outside any span (a question in words, tool outputs) stay free numbers joined by free
operators, so ``the combined population of A and B`` still gets ``1650 + 1706``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from interleaf.tools.regex_ebnf import RegexNotSupported, regex_to_ebnf

__all__ = ["MAX_STATES", "MAX_UNITS", "expressions_in", "ground_pattern_ebnf", "grounded_values", "numbers_in"]

MAX_STATES = 256
"""Most grammar states spent on counting uses (the product over distinct numbers of count + 1)."""
MAX_UNITS = 8
"""Most non-number units (operators, parentheses, spaces, words) between two numbers."""

_NUMBER = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+)?(?![0-9])")
# An operand of written-out arithmetic: a number not glued to a word (``3x``, ``v2`` are not).
_OPERAND = r"(?<![0-9.A-Za-z_])[0-9]+(?:\.[0-9]+)?(?![0-9A-Za-z_])"
_ARITH_TOKEN = re.compile(rf"(?P<num>{_OPERAND})|(?P<op>\bmod\b|[-+*/%^])|(?P<open>\()|(?P<close>\))|(?P<space> +)")
_REPEATED = re.compile(r"^\^?(?:\((?:\?:)?(?P<group>.*)\)|(?P<cls>\[(?:\\.|[^\]\\])*\]))\+\$?$", re.S)


def numbers_in(texts: Iterable[str]) -> tuple[str, ...]:
    """Every unsigned number written in ``texts`` (``12``, ``3.5``), in order, repeats kept: the
    multiset a grounded argument draws from. A sign is an operator, not part of the number."""
    return tuple(m.group(0).rstrip(".") for text in texts for m in _NUMBER.finditer(text))


def expressions_in(texts: Iterable[str]) -> tuple[str, ...]:
    """Arithmetic written out in ``texts``, in order, repeats kept: each maximal run of numbers,
    operators (``+ - * / % ^ mod``), brackets and spaces that joins two numbers or more by an
    operator, trimmed of operators and unmatched brackets at its ends (``Compute (3 + 4)^2.`` gives
    ``(3 + 4)^2``). A run glued to a word (``x^2 + 3``) or with brackets unbalanced inside is not
    arithmetic written out, and gives nothing."""
    out = []
    for text in texts:
        run: list[re.Match[str]] = []
        at = 0
        while at <= len(text):
            m = _ARITH_TOKEN.match(text, at) if at < len(text) else None
            if m is not None:
                run.append(m)
                at = m.end()
                continue
            if run and (span := _expression(text, run)) is not None:
                out.append(span)
            run, at = [], at + 1
    return tuple(out)


def _expression(text: str, run: list[re.Match[str]]) -> str | None:
    """The arithmetic in one run of arithmetic tokens (see ``expressions_in``); None when there is none."""
    start = run[0].start()
    if start > 0 and run[0].lastgroup != "space" and (text[start - 1].isalnum() or text[start - 1] == "_"):
        return None  # "x^2 + 3": the run continues a word
    toks = [m for m in run if m.lastgroup != "space"]
    while toks:
        if toks[0].lastgroup in ("op", "close"):
            toks.pop(0)
        elif toks[-1].lastgroup in ("op", "open"):
            toks.pop()
        else:
            depth = low = 0
            for m in toks:
                depth += (m.lastgroup == "open") - (m.lastgroup == "close")
                low = min(low, depth)
            if low < 0 and toks[-1].lastgroup == "close":
                toks.pop()  # "(see 3 + 4)": the ")" closes the prose's bracket
            elif depth > low and toks[0].lastgroup == "open":
                toks.pop(0)  # "(3 + 4 gives": the "(" opens the prose's bracket
            elif depth or low:
                return None
            else:
                break
    numbers = sum(m.lastgroup == "num" for m in toks)
    if numbers < 2 or not any(m.lastgroup == "op" for m in toks):
        return None
    return text[toks[0].start() : toks[-1].end()]


def _units(pattern: str) -> str | None:
    """The repeated unit of ``^(?:UNIT)+$`` / ``^[CLASS]+$`` (None for any other shape)."""
    m = _REPEATED.match(pattern)
    if m is None:
        return None
    unit = m.group("group") if m.group("group") is not None else m.group("cls")
    try:
        re.compile(unit)
    except re.error:
        return None  # the "group" was not one group, e.g. (a)(b)+
    return unit


def ground_pattern_ebnf(
    pattern: str, numbers: Sequence[str], prefix: str, expressions: Sequence[str] = ()
) -> dict[str, str] | None:
    """EBNF rules (name -> body; the first is the string's, JSON quotes included) for the strings
    ``pattern`` matches whose numbers are all among ``numbers``, each used at most as often as it
    occurs there (see the module docstring). Each of ``expressions`` that ``pattern`` can hold is
    a unit of its own, written whole, its numbers taken out of ``numbers``. Every rule name starts
    with ``prefix``. None when ``pattern`` is not a repetition of units or its units hold no digit:
    keep the plain pattern."""
    unit = _units(pattern)
    if unit is None or not re.fullmatch(f"(?:{unit})+", "0"):
        return None
    try:
        separator = regex_to_ebnf(unit, json_string=True, forbid="0123456789.")
    except RegexNotSupported:
        return None  # a literal digit inside a unit: not a shape grounding can split
    whole = Counter(e for e in expressions if re.fullmatch(f"(?:{unit})+", e) and not re.search(r'["\\\x00-\x1f]', e))
    inside = Counter(n for e, c in whole.items() for n in numbers_in([e]) * c)
    counts = Counter(n for n in numbers if re.fullmatch(f"(?:{unit})+", n)) - inside
    counts.update(whole)
    values = sorted(counts)
    rules = {prefix: ""}  # first, filled in last
    sep1 = f"{prefix}_sep1"
    rules[sep1] = f"{separator}{{1,{MAX_UNITS}}}"
    literal = {v: '"' + v + '"' for v in values}
    closing = [c for c in ")]}" if re.fullmatch(f"(?:{unit})", c)]
    closers = "[" + "".join("\\" + c for c in closing) + "]" if closing else ""
    if not values:
        body = sep1
    elif math.prod(c + 1 for c in counts.values()) > MAX_STATES:
        # Too many combinations to count: any grounded number, any number of times.
        rules[f"{prefix}_num"] = " | ".join(literal[v] for v in values)
        body = f"{sep1} | {sep1}? {prefix}_num ({sep1} {prefix}_num)* {sep1}?"
    else:
        # Two rules per state (how many of each value are used so far): ``n<k>`` writes one of
        # the numbers still available, ``t<k>`` follows a number: the end, or separators and
        # maybe another number.
        zero = tuple(0 for _ in values)
        ids: dict[tuple[int, ...], int] = {zero: 0}
        pending, seen = [zero], set()
        while pending:
            used = pending.pop()
            if used in seen:
                continue
            seen.add(used)
            k = ids[used]
            alts = []
            for i, v in enumerate(values):
                if used[i] < counts[v]:
                    nxt = (*used[:i], used[i] + 1, *used[i + 1 :])
                    ids.setdefault(nxt, len(ids))
                    pending.append(nxt)
                    alts.append(f"{literal[v]} {prefix}_t{ids[nxt]}")
            if alts:
                rules[f"{prefix}_n{k}"] = " | ".join(alts)
                rules[f"{prefix}_t{k}"] = f'"" | {sep1} {prefix}_n{k}?'
            else:  # every number used: only brackets may close (a small model otherwise goes on)
                rules[f"{prefix}_t{k}"] = f'"" | {closers}{{1,{MAX_UNITS}}}' if closers else '""'
        body = f"{sep1} {prefix}_n0? | {prefix}_n0"
    rules[prefix] = f'"\\"" ({body}) "\\""'
    return rules


def grounded_values(numbers: Sequence[str], *, integer: bool, lo: float | None, hi: float | None) -> list[str]:
    """The grounded numbers an integer / number argument may take (within ``lo``..``hi``), each also
    negated when the range allows it."""
    out = []
    for text in dict.fromkeys(numbers):
        if integer and "." in text:
            continue
        for v in (text, "-" + text) if text.strip("0.") else (text,):
            x = float(v)
            if (lo is None or x >= lo) and (hi is None or x <= hi):
                out.append(v)
    return out
