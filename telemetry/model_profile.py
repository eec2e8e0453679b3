"""Model architecture profiles: the few numbers PTE and the roofline simulator need.

A profile is read from a Hugging Face ``config.json`` (Llama, Qwen2/3, Qwen3-MoE, Mistral, GLM-4.5,
DeepSeek-V3 MLA, GPT-OSS key names) or taken from the shipped data (``telemetry/data/*.json``: the
12 models of Table 3 of arXiv 2604.05404 plus the default SmolLM2-135M).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "int8": 1}


class ModelProfile(BaseModel):
    """A transformer's architecture, as far as compute and KV-cache cost are concerned."""

    name: str
    """Model name (the key in ``MODEL_PROFILES``; matched against ``Trajectory.model``)."""
    n_params: int = Field(gt=0)
    """Total parameter count (all experts, embeddings included)."""
    n_active_params: int = Field(gt=0)
    """Parameters that take part in one token's forward pass (``N_active`` in PTE's γ; for the shipped
    Table 3 models exactly the value the paper uses)."""
    n_layers: int = Field(gt=0)
    """Decoder layers (``num_hidden_layers``)."""
    d_model: int = Field(gt=0)
    """Hidden size (``hidden_size``)."""
    n_heads: int = Field(gt=0)
    """Query attention heads (``num_attention_heads``)."""
    n_kv_heads: int = Field(gt=0)
    """Key/value heads (``num_key_value_heads``; equal to ``n_heads`` without GQA)."""
    head_dim: int = Field(gt=0)
    """Per-head dimension (``head_dim``, default ``d_model // n_heads``)."""
    vocab_size: int = Field(gt=0)
    """Vocabulary size."""
    kv_latent_dim: int | None = None
    """MLA only: cached latent width per token and layer, ``kv_lora_rank + qk_rope_head_dim``
    (DeepSeek-V3: 512 + 64 = 576). None for multi-head / GQA attention."""
    n_dense_layers: int = Field(default=0, ge=0)
    """MoE models only: leading decoder layers with a dense MLP (``first_k_dense_replace``; DeepSeek-V3: 3).
    Read by the ``paper`` KV formula of MLA models, which Table 3 reproduces over the MoE layers only."""
    dtype_bytes: int = Field(default=2, gt=0)
    """Bytes per weight and per KV element as served (2 for fp16/bf16, 4 for fp32)."""
    intermediate_size: int | None = None
    """Dense models only: the (gated) MLP's width (``intermediate_size``), for the per-kernel GPU cost model
    of the ``sim`` executor; None for MoE models and profiles built without it."""

    @model_validator(mode="after")
    def _check_heads(self) -> ModelProfile:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} for model {self.name!r}; "
                "check num_key_value_heads in the config"
            )
        if self.n_active_params > self.n_params:
            raise ValueError(
                f"n_active_params={self.n_active_params} exceeds n_params={self.n_params} for model "
                f"{self.name!r}; pass the total parameter count as n_params"
            )
        return self

    @property
    def gqa_ratio(self) -> float:
        """``H_kv / H_q`` (1.0 without grouped-query attention)."""
        return self.n_kv_heads / self.n_heads

    def kv_bytes_per_token(self, *, formula: str = "paper") -> float:
        """Bytes of KV cache one context token occupies across all layers.

        ``formula="paper"``: ``2 · dtype_bytes · n_layers · d_model · H_kv/H_q`` (PAPERS.md §A, K and V
        of width ``d_model`` scaled by the GQA ratio). ``formula="exact"``: ``2 · dtype_bytes · n_layers ·
        n_kv_heads · head_dim`` (differs where ``head_dim · n_heads != d_model``, e.g. Qwen3-32B).
        MLA: one shared latent per token and layer (no separate V), ``dtype_bytes · layers ·
        kv_latent_dim``; ``paper`` counts the MoE layers only (``n_layers - n_dense_layers``: 58 of
        DeepSeek-V3's 61), the one reading that reproduces Table 3's γ (0.00068); ``exact`` counts every
        layer, as the cache really holds a latent in all of them (docs/pte.md, "The MLA case").
        """
        if self.kv_latent_dim is not None:
            layers = self.n_layers - self.n_dense_layers if formula == "paper" else self.n_layers
            if formula not in ("paper", "exact"):
                raise ValueError(f"formula={formula!r} is not known; use 'paper' or 'exact'")
            return float(self.dtype_bytes * layers * self.kv_latent_dim)
        if formula == "paper":
            return 2.0 * self.dtype_bytes * self.n_layers * self.d_model * self.gqa_ratio
        if formula == "exact":
            return 2.0 * self.dtype_bytes * self.n_layers * self.n_kv_heads * self.head_dim
        raise ValueError(f"formula={formula!r} is not known; use 'paper' or 'exact'")

    @classmethod
    def from_hf_config(
        cls,
        config: dict[str, Any] | str | Path,
        *,
        name: str | None = None,
        n_params: int | None = None,
        n_active_params: int | None = None,
        dtype_bytes: int | None = None,
    ) -> ModelProfile:
        """Build a profile from a Hugging Face ``config.json`` (a dict, a file, or a model folder).

        Parameter counts not given are estimated from the architecture (attention, dense/MoE MLP,
        embeddings); ``n_active_params`` then excludes the embedding and LM-head matrices, the
        convention of Qwen's published "non-embedding" counts.
        """
        if not isinstance(config, dict):
            path = Path(config)
            if path.is_dir():
                path = path / "config.json"
            config = json.loads(path.read_text())
        cfg = dict(config)
        meta = cfg.pop("_interleaf", {})
        # GLM-4 (non-MoE) and older checkpoints nest or rename a few keys.
        if isinstance(cfg.get("text_config"), dict):
            cfg = {**cfg["text_config"], **{k: v for k, v in cfg.items() if k != "text_config"}}
        d_model = _first(cfg, "hidden_size", "d_model", "n_embd", "dim")
        n_layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
        n_heads = _first(cfg, "num_attention_heads", "n_head", "n_heads")
        n_kv = cfg.get("num_key_value_heads") or cfg.get("multi_query_group_num") or n_heads
        if cfg.get("multi_query_attention") is False:
            n_kv = n_heads
        head_dim = cfg.get("head_dim") or cfg.get("kv_channels") or d_model // n_heads
        vocab = _first(cfg, "vocab_size", "padded_vocab_size", "n_vocab")
        latent = None
        if cfg.get("kv_lora_rank"):
            latent = int(cfg["kv_lora_rank"]) + int(cfg.get("qk_rope_head_dim") or 0)
        total, active = estimate_param_counts(cfg)
        if dtype_bytes is None:
            dtype_bytes = _DTYPE_BYTES.get(str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"), 2)
        return cls(
            name=name or meta.get("name") or str(cfg.get("_name_or_path") or cfg.get("model_type") or "model"),
            n_params=int(n_params or meta.get("n_params") or total),
            n_active_params=int(n_active_params or meta.get("n_active_params") or active),
            n_layers=int(n_layers),
            d_model=int(d_model),
            n_heads=int(n_heads),
            n_kv_heads=int(n_kv),
            head_dim=int(head_dim),
            vocab_size=int(vocab),
            kv_latent_dim=latent,
            n_dense_layers=int(cfg.get("first_k_dense_replace") or 0) if cfg.get("n_routed_experts") else 0,
            dtype_bytes=int(dtype_bytes),
            intermediate_size=None if _is_moe(cfg) else cfg.get("intermediate_size") or cfg.get("ffn_hidden_size"),
        )


def _first(cfg: dict[str, Any], *keys: str) -> int:
    for key in keys:
        if cfg.get(key):
            return int(cfg[key])
    raise ValueError(f"config has none of the keys {keys}; is this a decoder-only transformer config.json?")


def estimate_param_counts(cfg: dict[str, Any]) -> tuple[int, int]:
    """(total, active non-embedding) parameter counts from a HF config; norms and biases ignored."""
    d = int(_first(cfg, "hidden_size", "d_model", "n_embd", "dim"))
    n_layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    h = int(_first(cfg, "num_attention_heads", "n_head", "n_heads"))
    kv = int(cfg.get("num_key_value_heads") or cfg.get("multi_query_group_num") or h)
    hd = int(cfg.get("head_dim") or d // h)
    vocab = int(_first(cfg, "vocab_size", "padded_vocab_size", "n_vocab"))
    if cfg.get("kv_lora_rank"):
        rope = int(cfg.get("qk_rope_head_dim") or 0)
        qk = int(cfg.get("qk_nope_head_dim") or hd) + rope
        v = int(cfg.get("v_head_dim") or hd)
        qr = cfg.get("q_lora_rank")
        r = int(cfg["kv_lora_rank"])
        attn = (d * qr + qr * h * qk if qr else d * h * qk) + d * (r + rope) + r * h * (qk - rope + v) + h * v * d
    else:
        attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    ff = int(cfg.get("intermediate_size") or cfg.get("ffn_hidden_size") or 4 * d)
    n_experts = int(cfg.get("num_experts") or cfg.get("n_routed_experts") or cfg.get("num_local_experts") or 0)
    dense_mlp = 3 * d * ff
    total_layers = active_layers = 0
    for layer in range(n_layers):
        moe = n_experts > 0 and _is_moe_layer(cfg, layer)
        if moe:
            moe_ff = int(cfg.get("moe_intermediate_size") or ff)
            k = int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 1)
            shared = int(cfg.get("n_shared_experts") or 0)
            expert = 3 * d * moe_ff
            total_layers += attn + (n_experts + shared) * expert + d * n_experts
            active_layers += attn + (k + shared) * expert + d * n_experts
        else:
            total_layers += attn + dense_mlp
            active_layers += attn + dense_mlp
    embeddings = vocab * d * (1 if cfg.get("tie_word_embeddings") else 2)
    return total_layers + embeddings, active_layers


def _is_moe(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("num_experts") or cfg.get("n_routed_experts") or cfg.get("num_local_experts"))


def _is_moe_layer(cfg: dict[str, Any], layer: int) -> bool:
    if layer < int(cfg.get("first_k_dense_replace") or 0):
        return False
    if layer in (cfg.get("mlp_only_layers") or []):
        return False
    step = int(cfg.get("decoder_sparse_step") or 1)
    return (layer + 1) % step == 0


def _load_shipped() -> dict[str, ModelProfile]:
    profiles: dict[str, ModelProfile] = {}
    for entry in sorted(resources.files("interleaf.telemetry").joinpath("data").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json") and not entry.name.startswith("hw_"):
            profile = ModelProfile.from_hf_config(json.loads(entry.read_text()))
            profiles[profile.name] = profile
    return profiles


MODEL_PROFILES: dict[str, ModelProfile] = _load_shipped()
"""The shipped profiles by name: Table 3's 12 models and ``SmolLM2-135M-Instruct``."""


def find_model_profile(model: str) -> ModelProfile | None:
    """The shipped profile for a served model name (``org/Name``, a path or a GGUF file name), or None."""
    if model in MODEL_PROFILES:
        return MODEL_PROFILES[model]
    key = Path(model).name.lower().removesuffix(".gguf")
    best: ModelProfile | None = None
    for name, profile in MODEL_PROFILES.items():
        low = name.lower()
        if key == low or key.startswith(low + ".") or key.startswith(low + "-q"):
            return profile
        if low in key and (best is None or len(low) > len(best.name)):
            best = profile
    return best


__all__ = ["MODEL_PROFILES", "ModelProfile", "estimate_param_counts", "find_model_profile"]
