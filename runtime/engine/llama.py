"""Model executor: a Llama-architecture forward pass over a paged KV pool.

The weights and the layer modules (projections, RMSNorm, MLP, rotary embedding) are transformers'
own, so numerics match a plain transformers forward; what we replace is the KV cache: keys and
values live in a preallocated pool indexed by slot (see kv_pool.py), so the radix cache can share
prefixes between requests and sessions by slot index, and a batch of sequences of different
lengths decodes in one forward with a padded slot table and a mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from interleaf.runtime.engine.executor import ForwardBatch, ForwardOutput, register_executor
from interleaf.runtime.engine.model_store import ModelSpec, read_config, resolve_model

if TYPE_CHECKING:
    from interleaf.runtime.engine.config import EngineConfig

DEFAULT_KV_TOKENS = 16384
"""KV pool size when ``--max-total-tokens`` is unset: 16384 tokens of SmolLM2-135M in fp32 are 1.5 GiB."""


class LlamaExecutor:
    """Runs a Llama-architecture model on CPU; owns the K/V pool tensors (the ``model`` executor)."""

    needs_kv_table = True
    constrained_decoding = True
    hidden_states = True
    simulated = False
    simulated_seconds = None

    def __init__(self, spec: ModelSpec, capacity: int, dtype: str = "float32"):
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
            shape = (B, L, self.n_kv_heads, self.head_dim)
            keys = self.k_pool[i].index_select(0, flat_kv).view(shape).transpose(1, 2)  # (B, kv_heads, L, head_dim)
            values = self.v_pool[i].index_select(0, flat_kv).view(shape).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
            out = out.transpose(1, 2).reshape(B, n_q, self.n_heads * self.head_dim)
            x = x + attn.o_proj(out)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
            if i in batch.capture_layers:
                hidden[i] = x.float().clone()
        last = x[torch.arange(B), batch.logit_index]  # (B, d)
        logits = self.model.lm_head(inner.norm(last)).float()
        return ForwardOutput(logits=logits, hidden=hidden)


@register_executor("model")
def model_executor(config: EngineConfig) -> LlamaExecutor:
    """``--executor model``: the model at ``--model-path`` (default SmolLM2-135M-Instruct) on CPU."""
    return LlamaExecutor(resolve_model(config.model_path), config.max_total_tokens or DEFAULT_KV_TOKENS, config.dtype)


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
