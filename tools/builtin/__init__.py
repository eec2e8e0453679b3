"""Built-in tools: ``python`` (sandboxed), ``calculator``, ``answer``, corpus ``search``/``visit``."""

from interleaf.tools.builtin.answer import answer
from interleaf.tools.builtin.calculator import calculator, evaluate
from interleaf.tools.builtin.corpus import Corpus, Document, SearchHit, make_corpus_tools
from interleaf.tools.builtin.python import make_python_tool, python_tool

__all__ = [
    "Corpus",
    "Document",
    "SearchHit",
    "answer",
    "calculator",
    "evaluate",
    "make_corpus_tools",
    "make_python_tool",
    "python_tool",
]
