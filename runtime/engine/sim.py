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
from typing import TYPE_CHECKING

import torch

from interleaf.runtime.engine.executor import ForwardBatch, ForwardOutput, register_executor
from interleaf.runtime.tokenizer import SIM_SCHEME, ByteTokenizer

if TYPE_CHECKING:
    from interleaf.runtime.engine.config import EngineConfig

_WORDS = b"abcdefghijklmnopqrstuvwxyz"

SIM_CONTEXT_LENGTH = 131072
"""Context length of every simulated model. The shipped model profiles (``interleaf.telemetry``) carry
no ``max_position_embeddings``; 131072 is that of Llama-3.1, the default ``--sim-model``."""


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
    token_block: int = 1
    """Real tokens one simulated token stands for (a cluster-scale simulation runs the scheduler on
    coarser tokens: a prefill of n is one of n·k real tokens; a decode step is k real decode steps)."""

    def step_time(self, q_tokens: list[int], kv_lens: list[int]) -> float:
        """One forward: sequence b feeds ``q_tokens[b]`` new tokens attending to ``kv_lens[b]`` keys."""
        k = self.token_block
        if k == 1:
            return self._step_time(q_tokens, kv_lens)
        if all(q == 1 for q in q_tokens):  # k decode steps; the context grows by k meanwhile
            return k * self._step_time(q_tokens, [kv * k - k // 2 for kv in kv_lens])
        return self._step_time([q * k for q in q_tokens], [kv * k for kv in kv_lens])

    def _step_time(self, q_tokens: list[int], kv_lens: list[int]) -> float:
        attn = 4.0 * self.n_layers * self.n_heads * self.head_dim
        flops = sum(
            2.0 * self.n_active_params * q + attn * q * (kv - q / 2) for q, kv in zip(q_tokens, kv_lens, strict=True)
        )
        bytes_read = self.weight_bytes + self.kv_bytes_per_token * sum(kv_lens)
        return max(flops / self.flops_per_s, bytes_read / self.bytes_per_s) + self.overhead_s


class SimExecutor:
    """The ``sim`` executor: predicted step times and a scripted token source (see the module docstring)."""

    needs_kv_table = False  # the cost model only needs each sequence's length
    constrained_decoding = False  # xgrammar needs a Hugging Face tokenizer; this one is bytes
    hidden_states = False  # there is no residual stream to return
    simulated = True

    def __init__(self, cost: RooflineCost, *, kv_capacity: int, model_name: str, model_path: str,
                 context_length: int = SIM_CONTEXT_LENGTH, clock: str = "real", seed: int = 0):  # fmt: skip
        self.cost = cost
        self.tokenizer = ByteTokenizer()
        self.vocab_size = ByteTokenizer.vocab_size
        self.eos_token_ids = [ByteTokenizer.eos_token_id]
        self.n_layers = cost.n_layers
        self.kv_capacity = kv_capacity
        self.model_name = model_name
        self.model_path = model_path
        self.context_length = context_length
        self.clock = clock
        self.seed = seed
        self.simulated_seconds = 0.0
        """Total predicted GPU time so far (what a virtual clock would read)."""

    @classmethod
    def from_config(cls, config: EngineConfig, mfu: float = 0.6, mbu: float = 0.8,
                    mem_fraction: float = 0.85) -> SimExecutor:  # fmt: skip
        """The ``--sim-model`` on the ``--sim-gpu``. Without ``--max-total-tokens``, the KV pool is what fits
        next to the weights in ``mem_fraction`` of the GPU's memory (SGLang's mem_fraction_static), or
        16384 tokens for a GPU whose memory size is unknown."""
        from interleaf.telemetry import find_hardware_profile, find_model_profile

        hw = find_hardware_profile(config.sim_gpu)
        model = find_model_profile(config.sim_model)
        if model is None:
            raise ValueError(f"--sim-model {config.sim_model!r} has no shipped profile (see interleaf.telemetry)")
        weight_bytes = model.n_params * model.dtype_bytes
        kv_bytes_per_token = model.kv_bytes_per_token(formula="exact")
        cost = RooflineCost(
            n_active_params=model.n_active_params, n_layers=model.n_layers, n_heads=model.n_heads,
            head_dim=model.head_dim, kv_bytes_per_token=kv_bytes_per_token, weight_bytes=weight_bytes,
            flops_per_s=hw.dense_flops * mfu, bytes_per_s=hw.mem_bw_bytes_per_s * mbu,
        )  # fmt: skip
        capacity = config.max_total_tokens
        if capacity is None:
            if hw.memory_bytes is None:
                capacity = 16384
            else:
                capacity = max(1024, int((hw.memory_bytes * mem_fraction - weight_bytes) / kv_bytes_per_token))
        return cls(cost, kv_capacity=capacity, model_name=f"sim:{config.sim_model}@{config.sim_gpu}",
                   model_path=f"{SIM_SCHEME}{config.sim_model}", clock=config.sim_clock)  # fmt: skip

    def forward(self, batch: ForwardBatch) -> ForwardOutput:
        """Advance the clock by the predicted step time; the scripted next token gets all the probability."""
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


@register_executor("sim")
def sim_executor(config: EngineConfig) -> SimExecutor:
    """``--executor sim``: ``--sim-model`` on ``--sim-gpu`` with the default efficiencies."""
    return SimExecutor.from_config(config)
