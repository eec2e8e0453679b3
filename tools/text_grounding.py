"""Grounded text: a free-text answer restricted to short spans of what the tools returned.

A small model asked "Who founded the town of Solka?" after a search that returned the article
answers with the town's name or with a worked example's answer: any one-line text is allowed. An
extractive grammar — the answer is a run of at most ``MAX_SPAN_WORDS`` consecutive words of one
tool output sentence, and not only words of the question — leaves it the article's words to choose
from, which is what a lookup answer is. Generic, in the spirit of ``interleaf.tools.grounding``:
nothing here knows a suite; the agent turns it on per turn when the episode has tool outputs and the
task's answer is free text (``Agent.ground_text``).

Spans never cross a sentence end, a line break or markdown syntax (``[``, ``](``, ``#``), and
urls are not spans. The grammar is a trie of the spans (shared prefixes written once), so its
size grows with the distinct words of the outputs, not with the number of spans.

``relevant_sentences`` serves number grounding the same way: the numbers a calculator may use are
those of tool-output sentences that share a content word with the question ("population" picks the
census sentence, not the founding year) or that are bare results (a calculator's ``-450``);
markdown list markers (a result list's ``1.``) are no sentence's numbers.

``question_spans`` and ``urls_in`` ground free-text *arguments* the same way (``x-grounded`` and
``format: uri`` strings in ``interleaf.tools.schema_grammar``): a search query is a short run of the
question's words, a multi-word name never cut, so a small model cannot misspell the town it was
asked about (``Vespelpel`` for ``Vesolpel`` finds nothing); a url is one the conversation wrote.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable

__all__ = [
    "MAX_SPANS",
    "MAX_SPAN_WORDS",
    "question_names",
    "question_spans",
    "relevant_sentences",
    "spans_ebnf",
    "text_spans",
    "urls_in",
]

MAX_SPAN_WORDS = 4
"""Longest answer span, in words."""
MAX_SPANS = 4000
"""Most distinct spans offered (the first ones in conversation order); beyond it the rest are dropped."""

# Pieces a span may not cross: sentence ends, brackets, markdown, quotes, line breaks.
_BREAK = re.compile(r"(?<=[a-z0-9])\.(?=\s|$)|[\n\[\]()#*|<>\"';:!?]|https?://\S+")
_WORD = re.compile(r"[^\s,]+")
_EDGE = ".,"


def _words(piece: str) -> list[str]:
    return [w.strip(_EDGE) for w in _WORD.findall(piece) if w.strip(_EDGE)]


def text_spans(
    outputs: Iterable[str], *, question: str = "", max_words: int = MAX_SPAN_WORDS, limit: int = MAX_SPANS
) -> list[str]:
    """The distinct spans of 1..``max_words`` consecutive words within one sentence of ``outputs``
    that hold at least one word not in ``question`` (case-insensitive), in order of appearance,
    at most ``limit``. Words are whitespace-separated, commas and trailing periods dropped."""
    asked = {w.lower() for w in _words(_BREAK.sub(" ", question))}
    seen: dict[str, None] = {}
    for text in outputs:
        for piece in _BREAK.split(text):
            words = _words(piece)
            for i in range(len(words)):
                for j in range(i + 1, min(i + max_words, len(words)) + 1):
                    span = words[i:j]
                    if all(w.lower() in asked for w in span):
                        continue
                    seen.setdefault(" ".join(span))
                    if len(seen) >= limit:
                        return list(seen)
    return list(seen)


def question_spans(question: str, *, max_words: int = MAX_SPAN_WORDS) -> list[str]:
    """The distinct runs of 1..``max_words`` consecutive units of one sentence of ``question``, in
    order: a unit is a word, or a whole name (capitalised words in a row, the sentence's first word
    excepted: ``Greta Othqua`` is one unit, never cut). Words as in ``text_spans``; spans holding
    a JSON escape character (``\\``) are left out."""
    seen: dict[str, None] = {}
    for piece in _BREAK.split(question):
        units: list[str] = []
        in_name = False
        for i, word in enumerate(_words(piece)):
            name = i > 0 and word[:1].isupper()  # a sentence's first word is capitalised anyway
            if name and in_name:
                units[-1] += " " + word
            else:
                units.append(word)
            in_name = name
        for i in range(len(units)):
            for j in range(i + 1, min(i + max_words, len(units)) + 1):
                span = " ".join(units[i:j])
                if "\\" not in span:
                    seen.setdefault(span)
    return list(seen)


_URL = re.compile(r"https?://[^\s()<>\[\]\"'`]+")


def urls_in(texts: Iterable[str]) -> tuple[str, ...]:
    """Every distinct ``http(s)`` url written in ``texts``, in order, without trailing punctuation."""
    return tuple(dict.fromkeys(m.group(0).rstrip(".,;:!?") for text in texts for m in _URL.finditer(text)))


def spans_ebnf(spans: Iterable[str], prefix: str) -> dict[str, str]:
    """EBNF rules (name -> body; the first, ``prefix``, matches exactly one of ``spans``) as a trie
    over their words. Raises ``ValueError`` for no spans (nothing could be written)."""
    trie: dict[str, dict] = {}
    for span in spans:
        node = trie
        for word in span.split(" "):
            node = node.setdefault(word, {})
        node[""] = {}  # a span may end here
    if not trie:
        raise ValueError("spans_ebnf: no spans to choose from")
    rules: dict[str, str] = {}
    ids = itertools.count(1)

    def emit(node: dict[str, dict], name: str, first: bool) -> None:
        alts = []
        for word, child in node.items():
            if word == "":
                alts.append('""')
                continue
            lit = json.dumps(word if first else " " + word)
            if child.keys() == {""}:
                alts.append(lit)
            else:
                sub = f"{prefix}_{next(ids)}"
                emit(child, sub, False)
                alts.append(f"{lit} {sub}")
        rules[name] = " | ".join(alts)

    rules[prefix] = ""
    emit(trie, prefix, True)
    return rules


# Words that say nothing about which fact is asked for.
# fmt: off
_STOP = frozenset((
    "a", "about", "after", "an", "and", "are", "as", "at", "be", "before", "by", "did", "do", "does", "for",
    "from", "had", "has", "have", "how", "if", "in", "is", "it", "its", "many", "much", "of", "on", "or",
    "that", "the", "their", "then", "this", "to", "was", "were", "what", "when", "where", "which", "who",
    "whom", "why", "with", "negative", "positive", "rounded", "round", "decimals", "decimal", "number",
    "value", "answer", "compute", "calculate", "find", "give",
))
# fmt: on
_SENTENCE = re.compile(r"(?<=[a-z0-9)])\.(?=\s|$)|\n")
_LIST_MARKER = re.compile(r"^\s*(?:[0-9]+\.|[-*])\s", re.M)
_LETTERS = re.compile(r"[a-z]{2,}")


def _content(text: str) -> set[str]:
    return {w for w in _LETTERS.findall(text.lower()) if w not in _STOP}


def question_names(question: str) -> list[str]:
    """The names ``question`` mentions, in order: runs of capitalised words that do not start a
    sentence (``question_spans``' whole-name units), e.g. ``["Kapel", "Greta Minor"]``."""
    names: list[str] = []
    for piece in _BREAK.split(question):
        run: list[str] = []
        for i, word in enumerate([*_words(piece), ""]):
            if i > 0 and word[:1].isupper():
                run.append(word)
                continue
            if run and " ".join(run) not in names:
                names.append(" ".join(run))
            run = []
    return names


# A passage starts at a markdown heading or list item: one search hit, one page.
_PASSAGE = re.compile(r"\n(?=[ \t]*(?:#|[0-9]+\.\s|[-*]\s))")
_TITLE_MARKUP = re.compile(r"^[\s#]*(?:[0-9]+\.\s+|[-*]\s+)?\[?")


def _titled(passage: str, names: list[str]) -> bool:
    """Whether ``passage`` opens with one of ``names`` (its heading or link title: what it is about)."""
    head = _TITLE_MARKUP.sub("", passage, count=1)
    return any(head.startswith(n) and not head[len(n) : len(n) + 1].isalnum() for n in names)


def passages_about(question: str, outputs: Iterable[str]) -> list[str]:
    """The passages of ``outputs`` (a search hit or page: the text from one markdown heading or list
    item to the next) that open with a name of ``question`` (``question_names``): what the tool
    found *about* what was asked, not a hit that only mentions it (the town on the Kapel river)."""
    names = question_names(question)
    if not names:
        return []
    return [p for text in outputs for p in _PASSAGE.split(text) if _titled(p, names)]


def _sentences(texts: Iterable[str]) -> list[str]:
    """The non-empty sentences of ``texts``, markdown list markers dropped first."""
    return [p for text in texts for p in _SENTENCE.split(_LIST_MARKER.sub("", text)) if p.strip()]


def relevant_sentences(question: str, outputs: Iterable[str]) -> list[str]:
    """The sentences of ``outputs`` that share a content word with ``question`` (a lowercase word of
    3+ letters that is not a stop word: names, written capitalised, do not count, so the town's name
    alone does not make its founding year relevant to a population question), plus the sentences with
    no words at all (a bare tool result). Markdown list markers are dropped first. When none of them
    holds a digit, every sentence (a question whose words the outputs do not use: no filter).

    When some passage (a search hit or page: the text from one markdown heading or list item to the
    next) opens with a name of the question (``question_names``) and holds a relevant number, only
    such passages count: a search for ``Kapel`` also lists the town on the Kapel river, whose
    population is not the one asked for."""
    asked = {w for w in _LETTERS.findall(question) if len(w) >= 3 and w not in _STOP}

    def relevant(texts: Iterable[str]) -> list[str]:
        return [p for p in _sentences(texts) if not _LETTERS.search(p.lower()) or asked & _content(p)]

    def has_digit(sentences: list[str]) -> bool:
        return any(c.isdigit() for p in sentences for c in p)

    outputs = list(outputs)
    kept = relevant(outputs)
    if not has_digit(kept):
        return _sentences(outputs)
    about_kept = relevant(passages_about(question, outputs))
    if has_digit([p for p in about_kept if _LETTERS.search(p.lower())]):
        return about_kept + [p for p in kept if not _LETTERS.search(p.lower()) and p not in about_kept]
    return kept
