"""Exemplar retrieval: the worked examples nearest a question (kNN few-shot).

A suite's pool holds one example per question kind; an episode shows the ``k`` nearest to its
question. Nearness is TF-IDF cosine over the question's *shape*: words lowercased, names
(capitalised words after the first) and numbers masked, unigrams and bigrams. So "Who founded the
town of Solka?" is nearest "Who founded the town of Velmin?" whatever the towns, and an arithmetic
question is nearest the example with the same operators. The IDF comes from the pool itself: words
every example shares ("what", "town") weigh nothing, the word that tells the kinds apart weighs most.

Generic on purpose (no suite knowledge): any pool of ``Exemplar`` works, a user's included.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interleaf.agents.tasks import Exemplar

__all__ = ["nearest_exemplars", "question_shape"]

_TOKEN = re.compile(r"[0-9]+(?:\.[0-9]+)?|\w+|[^\w\s]")
_NAME, _NUMBER = "<name>", "<num>"


def question_shape(question: str) -> list[str]:
    """The question's tokens with what varies between questions of one kind masked: numbers become
    ``<num>``, capitalised words other than the first ``<name>`` (a run of them is one name)."""
    out: list[str] = []
    for i, tok in enumerate(_TOKEN.findall(question)):
        if tok[0].isdigit():
            out.append(_NUMBER)
        elif i > 0 and tok[0].isupper():
            if not out or out[-1] != _NAME:
                out.append(_NAME)
        else:
            out.append(tok.lower())
    return out


def _features(question: str) -> Counter[str]:
    shape = question_shape(question)
    return Counter(shape + [f"{a} {b}" for a, b in itertools.pairwise(shape)])


def nearest_exemplars(question: str, pool: Sequence[Exemplar], k: int) -> list[Exemplar]:
    """The ``k`` examples of ``pool`` whose questions are nearest ``question`` (TF-IDF cosine of
    their shapes), the nearest **last**: it sits right before the question, where a small model
    copies from. Ties keep pool order. ``k`` >= the pool size returns the whole pool, reordered."""
    if k <= 0 or not pool:
        return []
    feats = [_features(e.question) for e in pool]
    df = Counter(f for fs in feats for f in fs)
    n = len(pool)

    def weights(counts: Counter[str]) -> dict[str, float]:
        # Smoothed IDF (as scikit-learn's): a feature of every example still counts a little.
        return {f: c * (math.log((1 + n) / (1 + df[f])) + 1) for f, c in counts.items()}

    target = weights(_features(question))
    target_norm = math.sqrt(sum(w * w for w in target.values())) or 1.0

    def similarity(i: int) -> float:
        w = weights(feats[i])
        norm = math.sqrt(sum(x * x for x in w.values())) or 1.0
        return sum(x * target.get(f, 0.0) for f, x in w.items()) / (norm * target_norm)

    scores = [similarity(i) for i in range(n)]
    best = sorted(range(n), key=lambda i: (-scores[i], i))[:k]
    return [pool[i] for i in reversed(best)]
