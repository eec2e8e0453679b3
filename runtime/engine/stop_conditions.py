"""When a request stops: grammar end, stop token, stop string, ``max_new_tokens``, the sequence limit.

A finish reason is SGLang's dict: ``{"type": "stop", "matched": token or string}``,
``{"type": "length", "length": n}`` or ``{"type": "abort", "message": ...}``.
"""

from __future__ import annotations

from typing import Any

from interleaf.runtime.engine.request import Req


class StopConditions:
    """Checks each newly sampled token against the request's stop conditions and the engine's limits."""

    def __init__(self, tokenizer: Any, eos_token_ids: list[int], max_seq_len: int):
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.max_seq_len = max_seq_len
        """Longest sequence (prompt + output) a request may reach."""

    def reason(self, req: Req, tok: int) -> dict[str, Any] | None:
        """The finish reason now that ``tok`` was appended to ``req.output_ids``, or None to go on.

        With stop strings, ``req.text`` is kept up to date (trimmed at the match unless ``no_stop_trim``);
        each step searches only the tail that could hold a new match.
        """
        p = req.params
        if req.grammar is not None:
            if not req.grammar.accept_token(tok):
                return {"type": "abort", "message": f"grammar rejected token {tok}"}
            if req.grammar.is_terminated():
                return {"type": "stop", "matched": tok}
        if tok in p.stop_token_ids or (not p.ignore_eos and tok in self.eos_token_ids):
            return {"type": "stop", "matched": tok}
        if p.stop:
            text = self.tokenizer.decode(req.output_ids, skip_special_tokens=p.skip_special_tokens)
            tail_from = max(0, len(req.text) - max(len(s) for s in p.stop))
            req.text = text
            for s in p.stop:
                pos = text.find(s, tail_from)
                if pos >= 0:
                    req.text = text if p.no_stop_trim else text[:pos]
                    return {"type": "stop", "matched": s}
        if len(req.output_ids) >= p.max_new_tokens:
            return {"type": "length", "length": p.max_new_tokens}
        if len(req.input_ids) + len(req.output_ids) >= self.max_seq_len:
            return {"type": "length", "length": len(req.output_ids)}
        return None
