"""Long-context decode: the per-sequence attention path gives the padded path's logits and greedy tokens.

The real model on CPU, driven at the executor level the way the scheduler drives it: prompts prefilled in
512-token chunks into contiguous slots, then decode steps whose new slots interleave across sequences.
"""

from __future__ import annotations

import pytest
import torch

from interleaf.runtime.engine.executor import ForwardBatch
from interleaf.runtime.engine.llama import LONG_CONTEXT, LlamaExecutor
from interleaf.runtime.engine.model_store import resolve_model

pytestmark = pytest.mark.model


def _prefill(ex: LlamaExecutor, ids: list[int], first_slot: int) -> tuple[torch.Tensor, int]:
    """Prefill ``ids`` alone in 512-token chunks; returns its slots and its greedy next token."""
    slots = torch.arange(first_slot, first_slot + len(ids))
    for s in range(0, len(ids), 512):
        n = min(512, len(ids) - s)
        out = ex.forward(ForwardBatch(
            tokens=torch.tensor([ids[s : s + n]]), positions=torch.arange(s, s + n)[None],
            write_slots=slots[s : s + n][None], kv_slots=slots[: s + n][None], kv_len=torch.tensor([s + n]),
            logit_index=torch.tensor([n - 1])))  # fmt: skip
    return slots, int(out.logits[0].argmax())


def test_per_sequence_decode_matches_the_padded_path_on_a_mixed_batch() -> None:
    ex = LlamaExecutor(resolve_model(), 4096)
    assert ex.decode_attention == "per-sequence"
    text = " ".join(f"Step {i}: the engine reads every key and value of the context once per token." for i in range(90))
    ids = ex.tokenizer.encode(text)
    prompts = [ids[: LONG_CONTEXT + 80], ids[40 : LONG_CONTEXT + 300], ids[:50]]  # two long rows and a short one
    assert len(prompts[1]) > LONG_CONTEXT + 200
    tables, tokens, next_slot = [], [], 1
    for p in prompts:
        slots, tok = _prefill(ex, p, next_slot)
        tables.append(slots)
        tokens.append(tok)
        next_slot += len(p)
    steps = 12
    for _ in range(steps):
        # One new slot per sequence: interleaved across sequences, as the scheduler's decode step allocates.
        new = torch.arange(next_slot, next_slot + len(prompts))
        next_slot += len(prompts)
        tables = [torch.cat([t, new[b : b + 1]]) for b, t in enumerate(tables)]
        kv_len = torch.tensor([len(t) for t in tables])
        batch = ForwardBatch(
            tokens=torch.tensor(tokens)[:, None], positions=(kv_len - 1)[:, None], write_slots=new[:, None],
            kv_slots=torch.nn.utils.rnn.pad_sequence(tables, batch_first=True), kv_len=kv_len,
            logit_index=torch.zeros(len(prompts), dtype=torch.int64))  # fmt: skip
        assert [n for _, n in ex._long_rows(batch)] == kv_len[:2].tolist()  # the short row stays padded
        ex.decode_attention = "padded"
        padded = ex.forward(batch).logits
        ex.decode_attention = "per-sequence"
        per_sequence = ex.forward(batch).logits
        torch.testing.assert_close(per_sequence, padded, atol=1e-3, rtol=0)
        top2 = padded.topk(2).values
        ties = (top2[:, 0] - top2[:, 1]) < 1e-3
        same = per_sequence.argmax(-1) == padded.argmax(-1)
        assert bool((same | ties).all()), f"greedy tokens differ without a tie: {padded.argmax(-1)} vs {same}"
        tokens = padded.argmax(-1).tolist()


def test_unknown_decode_attention_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"decode_attention must be 'per-sequence' or 'padded', got 'flash'"):
        LlamaExecutor(resolve_model(), 64, decode_attention="flash")  # type: ignore[arg-type]
