"""Model executor: a Llama-architecture forward pass over a paged KV pool.

The weights and the layer modules (projections, RMSNorm, MLP, rotary embedding) are transformers'
own, so numerics match a plain transformers forward; what we replace is the KV cache: keys and
values live in a preallocated pool indexed by slot (see kv_pool.py), so the radix cache can share
prefixes between requests and sessions by slot index, and a batch of sequences of different
lengths decodes in one forward with a padded slot table and a mask.

Attention has two paths. The *padded* one gathers every sequence's keys and values into one
(batch × longest context) tensor and runs ``scaled_dot_product_attention`` with a mask: prefill
chunks and short decode contexts use it. At long context that gather copies the whole context
through memory every layer of every step, so decode rows attending to ``LONG_CONTEXT`` keys or more
read the head-major pool in place (attention.py): with the C kernel (``native``, fp32, one call per
layer for all such rows) or, without a C compiler or for bf16, in torch (``per-sequence``: one
sequence at a time, contiguous slot runs as views, scattered slots gathered, grouped matmuls with the
9 query heads as 3 groups over the 3 KV heads and one fp32 softmax).
docs/engine.md ("Long context on CPU") has the measurements.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from interleaf.runtime.engine.attention import SegmentedAttention, key_segments, native_decode_attention
from interleaf.runtime.engine.executor import ForwardBatch, ForwardOutput, register_executor
from interleaf.runtime.engine.model_store import ModelSpec, merge_lora, read_config, resolve_model

if TYPE_CHECKING:
    from interleaf.runtime.engine.config import EngineConfig

LONG_CONTEXT = 1024
"""Decode rows attending to at least this many keys read the pool in place (``native`` or ``per-sequence``);
below it the padded batch is cache-resident and one batched call beats a Python loop over sequences (chosen
for the torch path; the kernel was not measured below it)."""

DecodeAttention = Literal["native", "per-sequence", "padded"]
"""How decode rows with ``LONG_CONTEXT`` keys or more attend: ``native`` (the C kernel, attention.py; the
default for fp32 when it builds), ``per-sequence`` (the same in torch: runs read in place, one sequence
at a time; the default otherwise) or ``padded`` (every row in one masked batch, as prefill does; kept to
measure and test the others against)."""


class LlamaExecutor:
    """Runs a Llama-architecture model on CPU; owns the K/V pool tensors (the ``model`` executor)."""

    needs_kv_table = True
    constrained_decoding = True
    hidden_states = True
    simulated = False
    simulated_seconds = None

    def __init__(
        self,
        spec: ModelSpec,
        capacity: int,
        dtype: str = "float32",
        decode_attention: DecodeAttention | None = None,
        lora_path: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                       "bf16": torch.bfloat16}.get(dtype)  # fmt: skip
        if torch_dtype is None:
            raise ValueError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
        config = read_config(spec)
        self.context_length = context_length_of(config, spec)
        self.model_name = spec.name
        self.model_path = str(spec.path)
        self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
        self.eos_token_ids = sorted({self.tokenizer.eos_token_id, *_config_eos(config)} - {None})
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch_dtype)
        if lora_path is not None:
            model = merge_lora(model, lora_path)
            self.model_name = f"{spec.name}+{Path(lora_path).name}"
        model.eval()
        self.model = model
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = cfg.num_key_value_heads
        # Older config.json files carry no head_dim: it is then hidden_size / heads.
        self.head_dim = config.get("head_dim") or cfg.hidden_size // cfg.num_attention_heads
        self.vocab_size = cfg.vocab_size
        self.kv_capacity = capacity
        # Head-major: one KV head's keys over a run of slots form one contiguous matrix (attention.py).
        shape = (self.n_layers, self.n_kv_heads, capacity + 1, self.head_dim)
        # torch.zeros maps untouched pages lazily: an idle pool costs almost no resident memory.
        self.k_pool = torch.zeros(shape, dtype=torch_dtype)
        self.v_pool = torch.zeros(shape, dtype=torch_dtype)
        if decode_attention not in (None, "native", "per-sequence", "padded"):
            raise ValueError(f"decode_attention must be 'native', 'per-sequence' or 'padded', got {decode_attention!r}")
        native = native_decode_attention() if torch_dtype == torch.float32 else None
        if decode_attention == "native" and native is None:
            raise ValueError("decode_attention='native' needs a float32 pool and a C compiler (attention.py); "
                             f"dtype is {dtype!r}: use 'per-sequence'")  # fmt: skip
        self.decode_attention: DecodeAttention = decode_attention or ("native" if native else "per-sequence")
        self._native = native
        self._segmented = SegmentedAttention(torch_dtype)

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch) -> ForwardOutput:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        inner = self.model.model
        B, n_q = batch.tokens.shape
        L = batch.kv_slots.shape[1]
        x = inner.embed_tokens(batch.tokens)
        cos, sin = inner.rotary_emb(x, batch.positions)
        key_pos = torch.arange(L)
        mask = (key_pos[None, None, :] <= batch.positions[:, :, None]) & (
            key_pos[None, None, :] < batch.kv_len[:, None, None]
        )
        mask = mask[:, None, :, :]  # (B, 1, n_q, L)
        flat_write = batch.write_slots.reshape(-1)
        long_rows = self._long_rows(batch)
        native_plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if long_rows:  # the rest keep the padded path, padded only to their own longest context
            long_index = torch.tensor(list(long_rows), dtype=torch.int64)
            if self.decode_attention == "native":
                native_plan = self._native_plan(batch, long_index, torch.tensor(list(long_rows.values())))
            else:  # where each row's keys lie, planned once: every layer reads the same slots
                segments = [key_segments(batch.kv_slots[b, :n]) for b, n in long_rows.items()]
            short = torch.tensor([b for b in range(B) if b not in long_rows], dtype=torch.int64)
            L = int(batch.kv_len[short].max()) if len(short) else 0
            flat_kv = batch.kv_slots[short, :L].reshape(-1)
            mask = mask[short, :, :, :L]
        else:
            flat_kv = batch.kv_slots.reshape(-1)
        hidden: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(B, n_q, self.n_heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(B, n_q, self.n_kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(B, n_q, self.n_kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            # index_copy_/index_select: much cheaper on CPU than advanced-indexing put/get.
            self.k_pool[i].index_copy_(1, flat_write, k.transpose(0, 1).reshape(self.n_kv_heads, -1, self.head_dim))
            self.v_pool[i].index_copy_(1, flat_write, v.transpose(0, 1).reshape(self.n_kv_heads, -1, self.head_dim))
            if long_rows:
                out = torch.empty_like(q)
                if len(short):
                    out[short] = self._attend_padded(i, q[short], flat_kv, mask, L)
                # Scaled once for all long rows: (rows, kv_heads, group, head_dim) fp32.
                qg = (q[long_index, :, 0].float() * self.head_dim**-0.5).view(len(long_rows), self.n_kv_heads, -1,
                                                                                self.head_dim)  # fmt: skip
                if native_plan is not None:
                    o = self._native(qg, self.k_pool[i], self.v_pool[i], *native_plan)
                    out[long_index, :, 0] = o.view(len(long_rows), self.n_heads, self.head_dim).to(q.dtype)
                else:
                    for r, (b, keys) in enumerate(zip(long_rows, segments, strict=True)):
                        o = self._segmented(qg[r], self.k_pool[i], self.v_pool[i], keys)
                        out[b, :, 0] = o.view(self.n_heads, self.head_dim)
            else:
                out = self._attend_padded(i, q, flat_kv, mask, L)
            out = out.transpose(1, 2).reshape(B, n_q, self.n_heads * self.head_dim)
            x = x + attn.o_proj(out)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
            if i in batch.capture_layers:
                hidden[i] = x.float().clone()
        last = x[torch.arange(B), batch.logit_index]  # (B, d)
        logits = self.model.lm_head(inner.norm(last)).float()
        every = self.model.lm_head(inner.norm(x)).float() if batch.all_logits else None  # prompt logprobs
        return ForwardOutput(logits=logits, hidden=hidden, all_logits=every)

    def _long_rows(self, batch: ForwardBatch) -> dict[int, int]:
        """Row -> keys it attends to, for the rows the native or per-sequence path takes: single-query rows
        with long context."""
        if self.decode_attention == "padded" or batch.tokens.shape[1] != 1:
            return {}
        # The padded path's mask lets a query see keys up to its position and below kv_len: the same keys.
        seen = torch.minimum(batch.kv_len, batch.positions[:, 0] + 1).tolist()
        return {b: n for b, n in enumerate(seen) if n >= LONG_CONTEXT}

    def _native_plan(
        self, batch: ForwardBatch, rows: torch.Tensor, lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slot table, lengths, scores scratch) of the long rows for the kernel, built once per forward. The
        kernel reads slots unchecked, so a slot outside the pool is refused here rather than read."""
        slots = batch.kv_slots[rows, : int(lens.max())].contiguous()
        if int(slots.min()) < 0 or int(slots.max()) > self.kv_capacity:
            raise ValueError(f"kv_slots must lie in 0..{self.kv_capacity}, got {int(slots.min())}..{int(slots.max())}")
        scores = torch.empty(len(rows), self.n_kv_heads, self.n_heads // self.n_kv_heads, slots.shape[1])
        return slots, lens, scores

    def _attend_padded(
        self, layer: int, q: torch.Tensor, flat_kv: torch.Tensor, mask: torch.Tensor, L: int
    ) -> torch.Tensor:
        """Attention of (B, heads, n_q, head_dim) queries over their padded (B × L) slot table, masked."""
        shape = (self.n_kv_heads, q.shape[0], L, self.head_dim)
        keys = self.k_pool[layer].index_select(1, flat_kv).view(shape).transpose(0, 1)  # (B, kv_heads, L, head_dim)
        values = self.v_pool[layer].index_select(1, flat_kv).view(shape).transpose(0, 1)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)


@register_executor("model")
def model_executor(config: EngineConfig) -> LlamaExecutor:
    """``--executor model``: the model at ``--model-path`` (default SmolLM2-135M-Instruct) on CPU."""
    spec = resolve_model(config.model_path)
    return LlamaExecutor(
        spec, config.max_total_tokens or kv_pool_tokens(spec, config), config.dtype, lora_path=config.lora_path
    )


def kv_pool_tokens(spec: ModelSpec, config: EngineConfig) -> int:
    """The pool size from ``--mem-fraction-static`` of the available memory (``kv_sizing``); logged."""
    import logging

    from interleaf.runtime.engine.kv_sizing import bytes_per_token, size_kv_pool

    cfg = read_config(spec)
    heads = cfg["num_attention_heads"]
    per_token = bytes_per_token(cfg["num_hidden_layers"], cfg.get("num_key_value_heads") or heads,
                                cfg.get("head_dim") or cfg["hidden_size"] // heads,
                                2 if config.dtype in ("bfloat16", "bf16") else 4)  # fmt: skip
    sizing = size_kv_pool(per_token, mem_fraction_static=config.mem_fraction_static,
                          max_tokens_used=config.max_running_requests * context_length_of(cfg, spec))  # fmt: skip
    logging.getLogger("interleaf.engine").info(sizing.describe())
    return sizing.tokens


def context_length_of(config: dict[str, Any], spec: ModelSpec) -> int:
    """The model's context length: ``max_position_embeddings`` of its config.json."""
    n = config.get("max_position_embeddings")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"{spec.path / 'config.json'}: max_position_embeddings={n!r}; the engine needs the "
                         "model's context length there (a positive integer)")  # fmt: skip
    return n


def _config_eos(config: dict[str, Any]) -> list[int]:
    eos = config.get("eos_token_id")
    if isinstance(eos, list):
        return eos
    return [eos] if isinstance(eos, int) else []
