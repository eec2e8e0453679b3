"""Checking what a grammar allows, character by character: how tests of the constrained formats
(tool calls, grounded arguments, constrained answers) ask xgrammar itself, not a re-implementation.

The vocabulary is printable ASCII plus a newline, one token per character, and an end-of-sequence
token: a text is allowed when every character is accepted and the grammar may end after it.
"""

from __future__ import annotations

import xgrammar as xg

VOCAB = [chr(i) for i in range(32, 127)] + ["\n"]
"""One token per printable ASCII character and the newline; the id after them is end-of-sequence."""
INFO = xg.TokenizerInfo([*VOCAB, "<eos>"], stop_token_ids=[len(VOCAB)])
"""xgrammar's view of that vocabulary."""


def compile_ebnf(ebnf: str) -> xg.CompiledGrammar:
    """The EBNF grammar compiled for the character vocabulary."""
    return xg.GrammarCompiler(INFO).compile_grammar(xg.Grammar.from_ebnf(ebnf))


def can_end(ebnf: str, text: str) -> bool:
    """True when the grammar accepts all of ``text`` and may end right after it."""
    matcher = xg.GrammarMatcher(compile_ebnf(ebnf))
    return bool(matcher.accept_string(text)) and bool(matcher.accept_token(len(VOCAB)))
