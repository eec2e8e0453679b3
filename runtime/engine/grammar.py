"""Constrained decoding with xgrammar (SGLang's default grammar backend), on CPU.

``sampling_params.json_schema`` / ``regex`` / ``ebnf`` compile once per distinct grammar (cached);
each constrained request gets its own matcher. Every decode step fills a token bitmask for the
constrained rows of the batch and applies it to their logits before sampling.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from interleaf.runtime.engine.request import Req, SamplingParams


class GrammarError(ValueError):
    """The grammar text does not compile; the message names the field."""


class GrammarBackend:
    def __init__(self, tokenizer: Any, vocab_size: int):
        import xgrammar as xgr

        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)
        self.vocab_size = vocab_size
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def compile(self, params: SamplingParams) -> Any:
        """Compile (or fetch) the grammar of ``params``; raises GrammarError naming the field."""
        if params.json_schema is not None:
            key = ("json_schema", params.json_schema)
        elif params.regex is not None:
            key = ("regex", params.regex)
        else:
            key = ("ebnf", params.ebnf or "")
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            try:
                if key[0] == "json_schema":
                    compiled = self.compiler.compile_json_schema(key[1], any_whitespace=False)
                elif key[0] == "regex":
                    compiled = self.compiler.compile_regex(key[1])
                else:
                    compiled = self.compiler.compile_grammar(key[1])
            except Exception as exc:  # xgrammar raises RuntimeError/ValueError subclasses
                raise GrammarError(f"sampling_params.{key[0]} does not compile: {exc}") from exc
            self._cache[key] = compiled
            return compiled

    def matcher(self, compiled: Any) -> Any:
        return self._xgr.GrammarMatcher(compiled)

    def mask(self, logits: torch.Tensor, reqs: list[Req]) -> None:
        """Mask, in place, the logits rows of constrained requests to their grammar's next tokens."""
        rows = [i for i, r in enumerate(reqs) if r.grammar is not None and not r.grammar.is_terminated()]
        if not rows:
            return
        bitmask = self._xgr.allocate_token_bitmask(len(reqs), self.vocab_size)
        for i in rows:
            reqs[i].grammar.fill_next_token_bitmask(bitmask, i)
        # The lm_head may be wider than the tokenizer's vocabulary; xgrammar masks the surplus.
        self._xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size, indices=rows)
