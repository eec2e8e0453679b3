"""The ``sim`` executor: the real scheduler, radix cache and sessions, with the model replaced by a
roofline cost model of a named GPU and model. For scale and capacity studies; everything it
produces is labelled simulated (``meta_info.simulated``, a ``simulated="true"`` label on every metric).

Step time = max(compute, memory) + a fixed per-step overhead, where
- compute = FLOPs / (dense peak × ``mfu``): 2·N_active per token plus attention 4·n_layers·n_heads·head_dim
  per (query, key) pair;
- memory  = bytes / (bandwidth × ``mbu``): the weights once per step plus every sequence's KV once.
The efficiencies are uncalibrated defaults (no GPU was available when they were chosen); bench/sim_calibrate.py
measures them on a GPU with randomly initialised models of the same shapes.

Tokens come from a seeded scripted source (a deterministic function of the previous token and position),
over a small byte-level vocabulary so text round-trips through /generate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from interleaf.runtime.engine.llama import ForwardBatch, ForwardOutput
from interleaf.runtime.tokenizer import ByteTokenizer

_WORDS = b"abcdefghijklmnopqrstuvwxyz"


@dataclass
class RooflineCost:
    """Predicted step times of one model on one GPU."""

    n_active_params: float
    n_layers: int
    n_heads: int
    head_dim: int
    kv_bytes_per_token: float
    weight_bytes: float
    flops_per_s: float
    bytes_per_s: float
    overhead_s: float = 0.002

    def step_time(self, q_tokens: list[int], kv_lens: list[int]) -> float:
        """One forward: sequence b feeds ``q_tokens[b]`` new tokens attending to ``kv_lens[b]`` keys."""
        attn = 4.0 * self.n_layers * self.n_heads * self.head_dim
        flops = sum(
            2.0 * self.n_active_params * q + attn * q * (kv - q / 2) for q, kv in zip(q_tokens, kv_lens, strict=True)
        )
        bytes_read = self.weight_bytes + self.kv_bytes_per_token * sum(kv_lens)
        return max(flops / self.flops_per_s, bytes_read / self.bytes_per_s) + self.overhead_s


class SimExecutor:
    needs_kv_table = False
    simulated = True

    def __init__(self, cost: RooflineCost, *, context_length: int, clock: str = "real", seed: int = 0,
                 label: str = ""):  # fmt: skip
        self.cost = cost
        self.tokenizer = ByteTokenizer()
        self.vocab_size = ByteTokenizer.vocab_size
        self.eos_token_ids = [ByteTokenizer.eos_token_id]
        self.n_layers = cost.n_layers
        self.context_length = context_length
        self.clock = clock
        self.seed = seed
        self.label = label
        self.simulated_seconds = 0.0
        """Total predicted GPU time so far (what a virtual clock would read)."""

    @classmethod
    def from_config(cls, config: Any, mfu: float = 0.6, mbu: float = 0.8) -> SimExecutor:
        from interleaf.telemetry import find_hardware_profile, find_model_profile

        hw = find_hardware_profile(config.sim_gpu)
        model = find_model_profile(config.sim_model)
        if model is None:
            raise ValueError(f"--sim-model {config.sim_model!r} has no shipped profile (see interleaf.telemetry)")
        cost = RooflineCost(
            n_active_params=model.n_active_params, n_layers=model.n_layers, n_heads=model.n_heads,
            head_dim=model.head_dim, kv_bytes_per_token=model.kv_bytes_per_token(formula="exact"),
            weight_bytes=model.n_params * model.dtype_bytes, flops_per_s=hw.dense_flops * mfu,
            bytes_per_s=hw.mem_bw_bytes_per_s * mbu,
        )  # fmt: skip
        return cls(cost, context_length=131072, clock=config.sim_clock, label=f"{model.name}@{hw.name}")

    @staticmethod
    def default_capacity(config: Any, mem_fraction: float = 0.85) -> int:
        """KV tokens that fit on the simulated GPU next to the weights (SGLang's mem_fraction_static)."""
        from interleaf.telemetry import find_hardware_profile, find_model_profile

        hw = find_hardware_profile(config.sim_gpu)
        model = find_model_profile(config.sim_model)
        if model is None or hw.memory_bytes is None:
            return 16384
        free = hw.memory_bytes * mem_fraction - model.n_params * model.dtype_bytes
        return max(1024, int(free / model.kv_bytes_per_token(formula="exact")))

    def forward(self, batch: ForwardBatch) -> ForwardOutput:
        B = batch.tokens.shape[0]
        kv_lens = batch.kv_len.tolist()
        q_tokens = [int(i) + 1 for i in batch.logit_index.tolist()]
        dt = self.cost.step_time(q_tokens, kv_lens)
        self.simulated_seconds += dt
        if self.clock == "real":
            time.sleep(dt)
        last = batch.tokens[torch.arange(B), batch.logit_index]
        pos = batch.positions[torch.arange(B), batch.logit_index]
        # Scripted source: a deterministic walk over lowercase letters with a space every few tokens.
        nxt = (last * 31 + pos * 17 + self.seed) % 29
        script = torch.where(nxt < 26, torch.tensor(list(_WORDS))[nxt.clamp(max=25)], torch.tensor(32))
        logits = torch.zeros(B, self.vocab_size)
        logits[torch.arange(B), script] = 1.0
        return ForwardOutput(logits=logits, hidden={})
