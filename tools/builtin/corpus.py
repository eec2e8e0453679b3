"""``search`` and ``visit`` over a local document corpus (BM25 via bm25s).

The PTE paper's search agents call a web search (``query: list[str]``) and a page reader
(``url``, ``goal``); task suites generate the corpus, so the same tool shapes run offline.
"""

from __future__ import annotations

import re
from typing import Annotated

import bm25s
import numpy as np
from pydantic import BaseModel, Field

from interleaf.tools.errors import ToolError
from interleaf.tools.schema_grammar import GROUNDED_KEY
from interleaf.tools.tool import Tool, tool

__all__ = ["Corpus", "Document", "SearchHit", "focus_on_goal", "make_corpus_tools"]

_WORD = re.compile(r"\w\w+", re.UNICODE)

# A query names what the question asks about: grounded in the question's words (a small model
# otherwise misspells the name it copies); a url is one the conversation wrote. Schema keywords,
# enforced by the turn grammar when the agent grounds strings (``interleaf.tools.schema_grammar``).
_Query = Annotated[str, Field(json_schema_extra={GROUNDED_KEY: "question"})]
_Url = Annotated[str, Field(json_schema_extra={"format": "uri"})]


class Document(BaseModel):
    """One page of a corpus."""

    url: str
    """Unique address the ``visit`` tool is called with."""
    title: str
    """Page title shown in search results."""
    text: str
    """Full page text."""


class SearchHit(BaseModel):
    """One ranked search result."""

    url: str
    """The document's url."""
    title: str
    """The document's title."""
    snippet: str
    """A passage of the text around the first query term."""
    score: float
    """BM25 score (higher is better)."""


def _snippet(text: str, terms: set[str], width: int) -> str:
    lowered = text.lower()
    positions = [m.start() for m in _WORD.finditer(lowered) if m.group() in terms]
    start = max(0, positions[0] - width // 3) if positions else 0
    piece = " ".join(text[start : start + width].split())
    return ("..." if start else "") + piece + ("..." if start + width < len(text) else "")


def _passages(text: str, width: int = 600) -> list[str]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out: list[str] = []
    for para in paragraphs:
        out.extend(para[i : i + width] for i in range(0, len(para), width))
    return out


def focus_on_goal(text: str, goal: str, max_chars: int) -> str:
    """Fit ``text`` into ``max_chars``: the opening passage, then the passages sharing most words
    with ``goal``, in page order. A cheap stand-in for the LLM reader of the paper's visit tool."""
    if len(text) <= max_chars:
        return text
    terms = {w for w in _WORD.findall(goal.lower()) if len(w) > 2}
    passages = _passages(text)
    scores = [len(terms & set(_WORD.findall(p.lower()))) for p in passages]
    ranked = [0, *sorted(range(1, len(passages)), key=lambda i: (-scores[i], i))]
    chosen, used = set(), 0
    for i in ranked:
        if used + len(passages[i]) > max_chars:
            continue
        chosen.add(i)
        used += len(passages[i])
    kept = [passages[i] for i in sorted(chosen)]
    omitted = len(text) - used
    return "\n\n".join(kept) + f"\n[... {omitted} characters of less relevant text omitted]"


class Corpus:
    """Documents indexed for BM25 retrieval; urls must be unique."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = list(documents)
        self._by_url: dict[str, Document] = {}
        for doc in self.documents:
            if doc.url in self._by_url:
                raise ValueError(f"duplicate document url {doc.url!r}: urls must be unique in a Corpus")
            self._by_url[doc.url] = doc
        self._retriever: bm25s.BM25 | None = None
        if self.documents:
            tokens = bm25s.tokenize(
                [f"{d.title}\n{d.text}" for d in self.documents], stopwords="en", show_progress=False
            )
            self._retriever = bm25s.BM25()
            self._retriever.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, url: str) -> Document | None:
        """The document at ``url`` (trailing slashes ignored), or ``None``."""
        return self._by_url.get(url) or self._by_url.get(url.rstrip("/")) or self._by_url.get(url + "/")

    def search(self, query: str, k: int = 5, snippet_chars: int = 240) -> list[SearchHit]:
        """The top ``k`` documents for ``query`` with a positive score."""
        if self._retriever is None or not query.strip():
            return []
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        vocab = self._retriever.vocab_dict
        known = [[t for t in tokens[0] if t in vocab]]
        if not known[0]:
            return []
        ids, scores = self._retriever.retrieve(known, k=min(k, len(self.documents)), show_progress=False)
        terms = set(known[0])
        hits = []
        for idx, score in zip(np.asarray(ids[0]).tolist(), np.asarray(scores[0]).tolist(), strict=True):
            if score <= 0:
                continue
            doc = self.documents[idx]
            hits.append(
                SearchHit(
                    url=doc.url,
                    title=doc.title,
                    snippet=_snippet(doc.text, terms, snippet_chars),
                    score=score,
                )
            )
        return hits


def make_corpus_tools(
    corpus: Corpus,
    *,
    top_k: int = 5,
    max_page_chars: int = 8000,
    search_name: str = "search",
    visit_name: str = "visit",
) -> list[Tool]:
    """``[search, visit]`` tools over ``corpus`` (rename them, e.g. to the paper's ``google_search_tool``)."""

    @tool(name=search_name, timeout_s=10.0, max_output_tokens=1024)
    def search(query: Annotated[list[_Query], Field(min_length=1, max_length=5)]) -> str:
        """Search the document collection; returns the top results (title, url, snippet) per query.

        Args:
            query: one or more search queries, searched separately.
        """
        blocks = []
        for q in query:
            hits = corpus.search(q, k=top_k)
            if not hits:
                blocks.append(f"## Results for '{q}'\nNo results. Try other keywords.")
                continue
            lines = [f"{i}. [{h.title}]({h.url})\n   {h.snippet}" for i, h in enumerate(hits, 1)]
            blocks.append(f"## Results for '{q}'\n" + "\n".join(lines))
        return "\n\n".join(blocks)

    @tool(name=visit_name, timeout_s=10.0, max_output_tokens=2048)
    def visit(url: _Url, goal: str) -> str:
        """Read a page found by search.

        Args:
            url: the url of a search result.
            goal: what you are looking for on the page.
        """
        doc = corpus.get(url)
        if doc is None:
            raise ToolError(f"No page at url {url!r}. Visit a url exactly as it appears in search results.")
        return f"# {doc.title}\nURL: {doc.url}\nGoal: {goal}\n\n{focus_on_goal(doc.text, goal, max_page_chars)}"

    return [search, visit]
