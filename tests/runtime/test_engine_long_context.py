"""Long-context decode: the per-sequence attention path gives the padded path's logits and greedy tokens.

The real model on CPU, driven at the executor level the way the scheduler drives it: prompts prefilled in
512-token chunks, then decode steps whose new slots interleave across sequences. Slot layouts: contiguous
prompts (read in place), fragmented ones (runs and scattered slots mixed, out of order), and a prefix
shared by two sequences as the radix cache shares it. ``key_segments`` (which slots are read in place and
which are gathered) has its own tests without the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from interleaf.runtime.engine.attention import MIN_RUN, SegmentedAttention, key_segments, native_decode_attention
from interleaf.runtime.engine.executor import ForwardBatch
from interleaf.runtime.engine.llama import LONG_CONTEXT, LlamaExecutor
from interleaf.runtime.engine.model_store import resolve_model

pytestmark = pytest.mark.model


def _prefill(ex: LlamaExecutor, ids: list[int], first_slot: int) -> tuple[torch.Tensor, int]:
    """Prefill ``ids`` alone in 512-token chunks into contiguous slots; returns its slots and its greedy next token."""
    slots = torch.arange(first_slot, first_slot + len(ids))
    return slots, _prefill_into(ex, ids, slots)


def _prefill_into(ex: LlamaExecutor, ids: list[int], slots: torch.Tensor, cached: int = 0) -> int:
    """Prefill ``ids[cached:]`` in 512-token chunks into ``slots`` (position order; the first ``cached`` already
    hold their K/V, as a radix-cache hit leaves them); returns the greedy next token."""
    for s in range(cached, len(ids), 512):
        n = min(512, len(ids) - s)
        out = ex.forward(ForwardBatch(
            tokens=torch.tensor([ids[s : s + n]]), positions=torch.arange(s, s + n)[None],
            write_slots=slots[s : s + n][None], kv_slots=slots[: s + n][None], kv_len=torch.tensor([s + n]),
            logit_index=torch.tensor([n - 1])))  # fmt: skip
    return int(out.logits[0].argmax())


def _paths() -> list[str]:
    """The long-context decode paths to check against ``padded``: the torch one, and the C kernel where it builds."""
    return ["per-sequence", *(["native"] if native_decode_attention() is not None else [])]


def _decode_all_paths(
    ex: LlamaExecutor, tables: list[torch.Tensor], tokens: list[int], next_slot: int, steps: int
) -> None:
    """``steps`` decode steps of every sequence, each run through every path on the same batch: logits within
    1e-3 of the padded path's and the same greedy tokens unless its top two are tied. New slots interleave
    across sequences, as the scheduler's decode step allocates them."""
    for _ in range(steps):
        new = torch.arange(next_slot, next_slot + len(tables))
        next_slot += len(tables)
        tables = [torch.cat([t, new[b : b + 1]]) for b, t in enumerate(tables)]
        kv_len = torch.tensor([len(t) for t in tables])
        batch = ForwardBatch(
            tokens=torch.tensor(tokens)[:, None], positions=(kv_len - 1)[:, None], write_slots=new[:, None],
            kv_slots=torch.nn.utils.rnn.pad_sequence(tables, batch_first=True), kv_len=kv_len,
            logit_index=torch.zeros(len(tables), dtype=torch.int64))  # fmt: skip
        ex.decode_attention = "padded"
        padded = ex.forward(batch).logits
        top2 = padded.topk(2).values
        ties = (top2[:, 0] - top2[:, 1]) < 1e-3
        for path in _paths():
            ex.decode_attention = path  # type: ignore[assignment]
            long = {b: n for b, n in enumerate(kv_len.tolist()) if n >= LONG_CONTEXT}
            assert ex._long_rows(batch) == long  # the short rows stay padded
            logits = ex.forward(batch).logits
            torch.testing.assert_close(logits, padded, atol=1e-3, rtol=0, msg=lambda m, p=path: f"{p}: {m}")
            same = logits.argmax(-1) == padded.argmax(-1)
            assert bool((same | ties).all()), (
                f"{path}: greedy tokens differ without a tie: {padded.argmax(-1)} vs {same}"
            )
        tokens = padded.argmax(-1).tolist()


def _long_text_ids(ex: LlamaExecutor) -> list[int]:
    text = " ".join(f"Step {i}: the engine reads every key and value of the context once per token." for i in range(90))
    return ex.tokenizer.encode(text)


def test_per_sequence_decode_matches_the_padded_path_on_a_mixed_batch() -> None:
    ex = LlamaExecutor(resolve_model(), 4096)
    assert ex.decode_attention == ("native" if native_decode_attention() is not None else "per-sequence")
    ids = _long_text_ids(ex)
    prompts = [ids[: LONG_CONTEXT + 80], ids[40 : LONG_CONTEXT + 300], ids[:50]]  # two long rows and a short one
    assert len(prompts[1]) > LONG_CONTEXT + 200
    tables, tokens, next_slot = [], [], 1
    for p in prompts:
        slots, tok = _prefill(ex, p, next_slot)
        tables.append(slots)
        tokens.append(tok)
        next_slot += len(p)
    # Contiguous prompts: one run read in place per sequence, then a scattered tail of decode slots.
    _decode_all_paths(ex, tables, tokens, next_slot, steps=12)


def test_per_sequence_decode_matches_on_fragmented_slots_and_a_shared_prefix() -> None:
    ex = LlamaExecutor(resolve_model(), 4096)
    ids = _long_text_ids(ex)
    prefix, a_tail, b_tail = ids[: LONG_CONTEXT + 20], ids[1200:1260], ids[1300:1450]
    # The shared prefix's slots: runs of several lengths (one of MIN_RUN - 1, gathered) and single slots, out of
    # pool order, as a pool fragmented by evictions hands them out.
    pieces = [torch.arange(2000, 2400), torch.arange(300, 300 + MIN_RUN - 1), torch.arange(101, 161, 2),
              torch.arange(700, 700 + MIN_RUN), torch.arange(1200, 1200 + len(prefix))]  # fmt: skip
    prefix_slots = torch.cat(pieces)[: len(prefix)]
    segments = key_segments(prefix_slots)
    assert len(segments.runs) == 3 and segments.scattered.numel() == MIN_RUN - 1 + 30
    a_slots = torch.cat([prefix_slots, torch.arange(2500, 2500 + len(a_tail))])
    b_slots = torch.cat([prefix_slots, torch.arange(2600, 2600 + len(b_tail))])
    token_a = _prefill_into(ex, prefix + a_tail, a_slots)
    token_b = _prefill_into(ex, prefix + b_tail, b_slots, cached=len(prefix))  # the radix hit: prefix not recomputed
    _decode_all_paths(ex, [a_slots, b_slots], [token_a, token_b], 3000, steps=6)


def test_key_segments_reads_long_runs_in_place_and_gathers_the_rest() -> None:
    slots = torch.cat([torch.arange(10, 10 + MIN_RUN), torch.tensor([5, 900]), torch.arange(400, 400 + MIN_RUN - 1),
                       torch.arange(200, 200 + 2 * MIN_RUN)])  # fmt: skip
    seg = key_segments(slots)
    assert seg.runs == [(10, 10 + MIN_RUN), (200, 200 + 2 * MIN_RUN)]
    assert seg.scattered.tolist() == [5, 900, *range(400, 400 + MIN_RUN - 1)]
    assert seg.n_keys == len(slots)
    assert key_segments(torch.arange(7, 7 + MIN_RUN - 1)).runs == []
    assert key_segments(torch.arange(7, 7 + MIN_RUN)).runs == [(7, 7 + MIN_RUN)]
    empty = key_segments(torch.empty(0, dtype=torch.int64))
    assert empty.runs == [] and empty.n_keys == 0


def test_unknown_decode_attention_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"decode_attention must be 'native', 'per-sequence' or 'padded', got 'flash'"):
        LlamaExecutor(resolve_model(), 64, decode_attention="flash")  # type: ignore[arg-type]


def test_native_kernel_matches_the_torch_path_on_ragged_rows() -> None:
    native = native_decode_attention()
    if native is None:
        pytest.skip("no C compiler: the native kernel is not built here")
    torch.manual_seed(0)
    heads, group, dim, capacity = 3, 3, 64, 3000
    k_layer, v_layer = torch.randn(heads, capacity, dim), torch.randn(heads, capacity, dim)
    # Ragged rows: one contiguous run, a run plus scattered slots out of order, a short row; padded with 0.
    rows = [torch.arange(100, 1300), torch.cat([torch.arange(2000, 2500), torch.randperm(90)[:70] + 1]),
            torch.arange(2900, 2930)]  # fmt: skip
    slots = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lens = torch.tensor([len(r) for r in rows])
    q = torch.randn(len(rows), heads, group, dim) * dim**-0.5
    out = native(q, k_layer, v_layer, slots, lens, torch.empty(len(rows), heads, group, slots.shape[1]))
    reference = SegmentedAttention(torch.float32)
    for r, row in enumerate(rows):
        torch.testing.assert_close(out[r], reference(q[r], k_layer, v_layer, key_segments(row)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="q must be a contiguous float32 tensor"):
        native(q.double(), k_layer, v_layer, slots, lens, torch.empty(len(rows), heads, group, slots.shape[1]))


def test_without_a_c_compiler_the_kernel_is_unavailable_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("INTERLEAF_CACHE_DIR", str(tmp_path))  # no kernel built before
    native_decode_attention.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="interleaf.engine"):
            assert native_decode_attention() is None
        assert "native decode attention unavailable" in caplog.text and "no-such-compiler" in caplog.text
    finally:
        native_decode_attention.cache_clear()  # the next caller builds (or finds) the real kernel
