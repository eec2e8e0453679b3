"""The ``sim`` executor: the real scheduler, radix cache and sessions, with the model replaced by a
roofline cost model of a named GPU and model. For scale and capacity studies; everything it
produces is labelled simulated (``meta_info.simulated``, a ``simulated="true"`` label on every metric).

Step time, with a GPU whose operator timings were measured (``HardwareProfile.calibration``; H100-SXM and
A100 fitted on Vidur's timings, H100-PCIe and H200 scaled from H100-SXM) and a dense model:
- the linear and elementwise kernels of every layer, the embedding, final norm and LM head (on the logit
  rows only), each timed by ``interleaf.telemetry.gpu_cost`` (a smooth roofline of fitted FLOP/s and
  bandwidth plus a fitted per-kernel overhead, GEMMs padded to whole waves of tiles);
- plus attention, not in the measured data: max(4·n_layers·n_heads·head_dim per (query, key) pair / F,
  every sequence's KV / B_w) with the fitted GEMM rates, plus one kernel overhead per layer;
- plus a fixed per-step overhead (host scheduling; a guess, 2 ms).
Otherwise (MoE models, GPUs without measurements) the plain roofline max(compute, memory) + overhead, where
- compute = FLOPs / F: 2·N_active per token plus the attention FLOPs above;
- memory  = bytes / B: the weights once per step plus every sequence's KV once;
and F, B are the fitted rates where the GPU has them, else dense peak × ``mfu`` and bandwidth × ``mbu``
(guessed 0.6 / 0.8). docs/engine.md, "Simulator cost model", has the fit and its errors.

Tokens come from a seeded scripted source (a deterministic function of the previous token and position),
over a small byte-level vocabulary so text round-trips through /generate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from interleaf.runtime.engine.executor import ForwardBatch, ForwardOutput, register_executor
from interleaf.runtime.tokenizer import SIM_SCHEME, ByteTokenizer
from interleaf.telemetry.gpu_cost import KernelCalibration, LayerShape, elementwise_time, gemm_time, layer_time

if TYPE_CHECKING:
    from interleaf.runtime.engine.config import EngineConfig
    from interleaf.telemetry import HardwareProfile, ModelProfile

_WORDS = b"abcdefghijklmnopqrstuvwxyz"
_WORD_IDS = torch.tensor(list(_WORDS))

SIM_CONTEXT_LENGTH = 131072
"""Context length of every simulated model. The shipped model profiles (``interleaf.telemetry``) carry
no ``max_position_embeddings``; 131072 is that of Llama-3.1, the default ``--sim-model``."""


@dataclass
class CalibratedLinear:
    """The weight-bearing and elementwise kernels of one forward, timed kernel by kernel with a GPU's
    fitted calibration (``interleaf.telemetry.gpu_cost``)."""

    calibration: KernelCalibration
    shape: LayerShape
    n_layers: int
    vocab_size: int
    _cache: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)

    def seconds(self, n_tokens: int, n_logits: int) -> float:
        """``n_tokens`` through every layer, the embedding and final norm; the LM head on ``n_logits`` rows."""
        key = (n_tokens, n_logits)
        t = self._cache.get(key)
        if t is None:
            cal, shape = self.calibration, self.shape
            d, b = shape.d_model, shape.dtype_bytes
            t = (
                self.n_layers * layer_time(cal, shape, n_tokens)
                + elementwise_time(cal, b * 2.0 * n_tokens * d)  # embedding gather
                + elementwise_time(cal, b * 2.0 * n_tokens * d)  # final norm
                + gemm_time(cal, n_logits, d, self.vocab_size, b)
            )
            if len(self._cache) > 1 << 16:  # steps repeat a few shapes; bound the rest
                self._cache.clear()
            self._cache[key] = t
        return t


@dataclass
class RooflineCost:
    """Predicted step times of one model on one GPU (the module docstring has the formulas)."""

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
    linear: CalibratedLinear | None = None
    """Calibrated per-kernel time of the linear layers; None = the plain roofline over all weights."""

    @classmethod
    def for_profiles(cls, hw: HardwareProfile, model: ModelProfile, *, mfu: float = 0.6,
                     mbu: float = 0.8) -> RooflineCost:  # fmt: skip
        """``model`` on ``hw``: calibrated where ``hw`` has a calibration and ``model`` is dense; the fitted
        rates in the plain roofline for an MoE model; ``mfu`` / ``mbu`` of the datasheet peaks otherwise."""
        cal = hw.calibration
        linear = None
        if cal is None:
            flops, bw = hw.dense_flops * mfu, hw.mem_bw_bytes_per_s * mbu
        else:
            flops, bw = cal.flops_per_s, cal.weight_bytes_per_s
            if model.intermediate_size is not None:
                shape = LayerShape(d_model=model.d_model, n_heads=model.n_heads, n_kv_heads=model.n_kv_heads,
                                   head_dim=model.head_dim, d_ff=model.intermediate_size,
                                   dtype_bytes=model.dtype_bytes)  # fmt: skip
                linear = CalibratedLinear(cal, shape, model.n_layers, model.vocab_size)
        return cls(
            n_active_params=model.n_active_params, n_layers=model.n_layers, n_heads=model.n_heads,
            head_dim=model.head_dim, kv_bytes_per_token=model.kv_bytes_per_token(formula="exact"),
            weight_bytes=model.n_params * model.dtype_bytes, flops_per_s=flops, bytes_per_s=bw, linear=linear,
        )  # fmt: skip

    def step_time(self, q_tokens: list[int], kv_lens: list[int]) -> float:
        """One forward: sequence b feeds ``q_tokens[b]`` new tokens attending to ``kv_lens[b]`` keys."""
        k = self.token_block
        if k == 1:
            return self._step_time(q_tokens, kv_lens)
        if all(q == 1 for q in q_tokens):  # k decode steps; the context grows by k meanwhile
            return k * self._step_time(q_tokens, [kv * k - k // 2 for kv in kv_lens])
        return self._step_time([q * k for q in q_tokens], [kv * k for kv in kv_lens])

    def _step_time(self, q_tokens: list[int], kv_lens: list[int]) -> float:
        per_pair = 4.0 * self.n_layers * self.n_heads * self.head_dim
        attn_flops = sum(per_pair * q * (kv - q / 2) for q, kv in zip(q_tokens, kv_lens, strict=True))
        kv_bytes = self.kv_bytes_per_token * sum(kv_lens)
        if self.linear is None:
            flops = attn_flops + 2.0 * self.n_active_params * sum(q_tokens)
            bytes_read = self.weight_bytes + kv_bytes
            return max(flops / self.flops_per_s, bytes_read / self.bytes_per_s) + self.overhead_s
        attention = max(attn_flops / self.flops_per_s, kv_bytes / self.bytes_per_s)
        attention += self.n_layers * self.linear.calibration.gemm_overhead_s  # one attention kernel per layer
        return self.linear.seconds(sum(q_tokens), len(q_tokens)) + attention + self.overhead_s


MEM_FRACTION = 0.85
"""Share of a GPU's memory for the weights and the KV pool (SGLang's ``mem_fraction_static``)."""


def kv_room(hw: HardwareProfile, cost: RooflineCost, mem_fraction: float = MEM_FRACTION) -> int | None:
    """KV tokens that fit next to the weights in ``mem_fraction`` of ``hw``'s memory: 0 or less when the weights
    alone do not fit; None when the GPU's memory size is unknown."""
    if hw.memory_bytes is None:
        return None
    return int((hw.memory_bytes * mem_fraction - cost.weight_bytes) / cost.kv_bytes_per_token)


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
                    mem_fraction: float = MEM_FRACTION) -> SimExecutor:  # fmt: skip
        """The ``--sim-model`` on the ``--sim-gpu``. Without ``--max-total-tokens``, the KV pool is what fits
        next to the weights in ``mem_fraction`` of the GPU's memory (SGLang's mem_fraction_static), or
        16384 tokens for a GPU whose memory size is unknown."""
        from interleaf.telemetry import find_hardware_profile, find_model_profile

        hw = find_hardware_profile(config.sim_gpu)
        model = find_model_profile(config.sim_model)
        if model is None:
            raise ValueError(f"--sim-model {config.sim_model!r} has no shipped profile (see interleaf.telemetry)")
        cost = RooflineCost.for_profiles(hw, model, mfu=mfu, mbu=mbu)
        capacity = config.max_total_tokens
        if capacity is None:
            room = kv_room(hw, cost, mem_fraction)
            # A pool of at least 1,024 tokens, even where the weights leave less (or nothing): the engine still
            # starts; `interleaf simulate` refuses such a pairing instead (SimulationSetup).
            capacity = 16384 if room is None else max(1024, room)
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
        if not batch.all_logits:  # only the rows sampled from: a long prefill chunk costs no (n_q, vocab) tensor
            at = batch.logit_index[:, None]
            logits = self._script_logits(batch.tokens.gather(1, at), batch.positions.gather(1, at))[:, 0]
            return ForwardOutput(logits=logits, hidden={})
        every = self._script_logits(batch.tokens, batch.positions)  # (B, n_q, vocab)
        logits = every[torch.arange(B), batch.logit_index]
        return ForwardOutput(logits=logits, hidden={}, all_logits=every)

    def _script_logits(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Scripted source: a deterministic walk over lowercase letters with a space every few tokens;
        the next token of each row gets all the probability."""
        nxt = (tokens * 31 + positions * 17 + self.seed) % 29
        script = torch.where(nxt < 26, _WORD_IDS[nxt.clamp(max=25)], 32)
        logits = torch.zeros(*tokens.shape, self.vocab_size)
        logits.scatter_(-1, script[..., None], 1.0)
        return logits


@register_executor("sim")
def sim_executor(config: EngineConfig) -> SimExecutor:
    """``--executor sim``: ``--sim-model`` on ``--sim-gpu`` with the default efficiencies."""
    return SimExecutor.from_config(config)
