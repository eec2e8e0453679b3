"""Model executor: a Llama-architecture forward pass over a paged KV pool.

The weights and the layer modules (projections, RMSNorm, MLP, rotary embedding) are transformers'
own, so numerics match a plain transformers forward; what we replace is the KV cache: keys and
values live in a preallocated pool indexed by slot (see kv_pool.py), so the radix cache can share
prefixes between requests and sessions by slot index, and a batch of sequences of different
lengths decodes in one forward with a padded slot table and a mask.

Attention has two paths. The *padded* one gathers every sequence's keys and values into one
(batch × longest context) tensor and runs ``scaled_dot_product_attention`` with a mask: prefill
chunks and short decode contexts use it. At long context that tensor outgrows the caches (8
sequences × 2k tokens are 25 MB per layer in fp32), so a decode step wrote and re-read it through
memory, and the CPU's flash kernel is slow at one query row in bf16. Decode rows attending to
``LONG_CONTEXT`` keys or more therefore take the *per-sequence* path: one sequence at a time, its
keys and values gathered into a reused buffer that stays in cache, then two grouped matmuls (the
9 query heads as 3 groups over the 3 KV heads; no repeat of the KV heads) and an fp32 softmax.
docs/engine.md ("Long context on CPU") has the measurements.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from interleaf.runtime.engine.executor import ForwardBatch, ForwardOutput, register_executor
from interleaf.runtime.engine.model_store import ModelSpec, merge_lora, read_config, resolve_model

if TYPE_CHECKING:
    from interleaf.runtime.engine.config import EngineConfig

LONG_CONTEXT = 1024
"""Decode rows attending to at least this many keys take the per-sequence attention path; below it the
padded batch is cache-resident and one batched call beats a Python loop over sequences."""

DecodeAttention = Literal["per-sequence", "padded"]
"""How decode rows with ``LONG_CONTEXT`` keys or more attend: ``per-sequence`` (the default) or ``padded``
(every row in one masked batch, as prefill does; kept to measure and test the other against)."""


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
        decode_attention: DecodeAttention = "per-sequence",
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
        shape = (self.n_layers, capacity + 1, self.n_kv_heads, self.head_dim)
        # torch.zeros maps untouched pages lazily: an idle pool costs almost no resident memory.
        self.k_pool = torch.zeros(shape, dtype=torch_dtype)
        self.v_pool = torch.zeros(shape, dtype=torch_dtype)
        if decode_attention not in ("per-sequence", "padded"):
            raise ValueError(f"decode_attention must be 'per-sequence' or 'padded', got {decode_attention!r}")
        self.decode_attention: DecodeAttention = decode_attention
        # Per-sequence gather buffers, grown on demand and reused so that no step allocates (and page-faults)
        # context-sized tensors; fp32 copies when the pool is bf16 (the softmax and matmuls run in fp32).
        self._gather = _GatherBuffers(torch_dtype)

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
        if long_rows:  # the rest keep the padded path, padded only to their own longest context
            short = torch.tensor([b for b in range(B) if b not in dict(long_rows)], dtype=torch.int64)
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
            self.k_pool[i].index_copy_(0, flat_write, k.transpose(1, 2).reshape(-1, self.n_kv_heads, self.head_dim))
            self.v_pool[i].index_copy_(0, flat_write, v.transpose(1, 2).reshape(-1, self.n_kv_heads, self.head_dim))
            if long_rows:
                out = torch.empty_like(q)
                if len(short):
                    out[short] = self._attend_padded(i, q[short], flat_kv, mask, L)
                for b, n in long_rows:
                    out[b] = self._attend_one(i, q[b], batch.kv_slots[b, :n])
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

    def _long_rows(self, batch: ForwardBatch) -> list[tuple[int, int]]:
        """(row, keys attended) of the rows the per-sequence path takes: single-query rows with long context."""
        if self.decode_attention != "per-sequence" or batch.tokens.shape[1] != 1:
            return []
        # The padded path's mask lets a query see keys up to its position and below kv_len: the same keys.
        seen = torch.minimum(batch.kv_len, batch.positions[:, 0] + 1).tolist()
        return [(b, n) for b, n in enumerate(seen) if n >= LONG_CONTEXT]

    def _attend_padded(
        self, layer: int, q: torch.Tensor, flat_kv: torch.Tensor, mask: torch.Tensor, L: int
    ) -> torch.Tensor:
        """Attention of (B, heads, n_q, head_dim) queries over their padded (B × L) slot table, masked."""
        shape = (q.shape[0], L, self.n_kv_heads, self.head_dim)
        keys = self.k_pool[layer].index_select(0, flat_kv).view(shape).transpose(1, 2)  # (B, kv_heads, L, head_dim)
        values = self.v_pool[layer].index_select(0, flat_kv).view(shape).transpose(1, 2)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)

    def _attend_one(self, layer: int, q: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Attention of one sequence's single query, (heads, 1, head_dim), over the keys at ``slots``."""
        kv_heads, d = self.n_kv_heads, self.head_dim
        keys, values = self._gather.take(self.k_pool[layer], self.v_pool[layer], slots)  # (n, kv_heads, d) fp32
        # Query heads h*g .. h*g+g-1 share KV head h (transformers' repeat_kv order): a (kv_heads, g, d) view.
        qg = q.reshape(kv_heads, -1, d).float() * d**-0.5
        scores = torch.matmul(qg, keys.permute(1, 2, 0))  # (kv_heads, g, n)
        out = torch.matmul(torch.softmax(scores, dim=-1), values.transpose(0, 1))  # (kv_heads, g, d)
        return out.reshape(q.shape).to(q.dtype)


class _GatherBuffers:
    """Reused buffers for one sequence's gathered keys and values (fp32 copies too for a bf16 pool)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.k = self.v = self.k32 = self.v32 = torch.empty(0)

    def take(
        self, k_pool: torch.Tensor, v_pool: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values at ``slots`` as (n, kv_heads, head_dim) fp32 views of the buffers."""
        n, row = int(slots.numel()), k_pool.shape[1:]
        size = n * row.numel()
        if self.k.numel() < size:
            grown = max(size, 2 * self.k.numel())
            self.k, self.v = torch.empty(grown, dtype=self.dtype), torch.empty(grown, dtype=self.dtype)
            if self.dtype != torch.float32:
                self.k32, self.v32 = torch.empty(grown), torch.empty(grown)
        k = torch.index_select(k_pool, 0, slots, out=self.k[:size].view(n, *row))
        v = torch.index_select(v_pool, 0, slots, out=self.v[:size].view(n, *row))
        if self.dtype != torch.float32:
            k = self.k32[:size].view(n, *row).copy_(k)
            v = self.v32[:size].view(n, *row).copy_(v)
        return k, v


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
