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
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable

__all__ = ["MAX_SPANS", "MAX_SPAN_WORDS", "relevant_sentences", "spans_ebnf", "text_spans"]

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


def relevant_sentences(question: str, outputs: Iterable[str]) -> list[str]:
    """The sentences of ``outputs`` that share a content word with ``question`` (a lowercase word of
    3+ letters that is not a stop word: names, written capitalised, do not count, so the town's name
    alone does not make its founding year relevant to a population question), plus the sentences with
    no words at all (a bare tool result). Markdown list markers are dropped first. When none of them
    holds a digit, every sentence (a question whose words the outputs do not use: no filter)."""
    asked = {w for w in _LETTERS.findall(question) if len(w) >= 3 and w not in _STOP}
    sentences = [p for text in outputs for p in _SENTENCE.split(_LIST_MARKER.sub("", text)) if p.strip()]
    kept = [p for p in sentences if not _LETTERS.search(p.lower()) or asked & _content(p)]
    if not any(c.isdigit() for p in kept for c in p):
        return sentences
    return kept
