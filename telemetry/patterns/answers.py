"""Finding a trajectory's answer in text: as a whole token or number, never inside another one or as a
step label ("Step 2", "2. First…")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from interleaf.telemetry.records import Trajectory

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|\.\d)")
# A number that labels rather than states: "Step 2", "case 2", "#2", "No. 2", or a list marker.
_LABEL_BEFORE = re.compile(
    r"(?:\b(?:step|steps|case|part|option|method|approach|stage|phase|round|item|line|example|question|"
    r"problem|turn|attempt|no\.?|number)|#)\s*$",
    re.I,
)
_LIST_MARKER_AFTER = re.compile(r"^[.):]\s")


def final_answer(traj: Trajectory) -> str | None:
    """The trajectory's answer: ``Trajectory.answer``, else the last ``<answer>`` tag in its text."""
    if traj.answer:
        return traj.answer
    for turn in reversed(traj.turns):
        found = _ANSWER_TAG.findall(turn.text)
        if found:
            return found[-1]
    return None


def answer_tag_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges of ``<answer>…</answer>`` tags (the answer stated as the answer, not reasoning)."""
    return [(m.start(), m.end()) for m in _ANSWER_TAG.finditer(text)]


def normalise_answer(answer: str) -> str:
    """``\\boxed{42}`` → ``42``, ``$x = 3$`` → ``3``, ``51.`` → ``51``."""
    a = answer.strip().strip("$").strip()
    m = re.fullmatch(r"\\boxed\{(.*)\}", a, re.S)
    if m:
        a = m.group(1)
    m = re.fullmatch(r"[A-Za-z]\w*\s*=\s*(.+)", a, re.S)
    if m:
        a = m.group(1)
    return a.strip().strip("$").strip().rstrip(".").strip()


def _as_number(s: str) -> float | None:
    try:
        value = float(s.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class AnswerMatcher:
    """Occurrences of one answer in text: numerically equal whole numbers for a numeric answer
    (``51`` matches ``51.0`` and ``51``, never ``510``, ``5.1`` or "Step 51"), a whole-word,
    case-insensitive match otherwise."""

    answer: str

    @property
    def number(self) -> float | None:
        """The answer's numeric value, None for a non-numeric answer."""
        return _as_number(self.answer)

    def find(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every occurrence in ``text``."""
        if not self.answer:
            return []
        value = self.number
        if value is None:
            word = re.compile(r"(?<!\w)" + re.escape(self.answer) + r"(?!\w)", re.I)
            return [(m.start(), m.end()) for m in word.finditer(text)]
        out = []
        for m in _NUMBER.finditer(text):
            found = _as_number(m.group(0))
            if found is None or not math.isclose(found, value, rel_tol=1e-9, abs_tol=1e-12):
                continue
            if _LABEL_BEFORE.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            line_start = text.rfind("\n", 0, m.start()) + 1
            if not text[line_start : m.start()].strip() and _LIST_MARKER_AFTER.match(text[m.end() : m.end() + 2]):
                continue
            out.append((m.start(), m.end()))
        return out


__all__ = ["AnswerMatcher", "answer_tag_spans", "final_answer", "normalise_answer"]
