"""The scheduler's shared state: sampling parameters and requests (mini-sglang's core.py)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from interleaf.runtime.engine.radix_cache import Node

GREEDY_TEMPERATURE = 1e-6
"""Temperatures below this sample greedily (SGLang's ``_SAMPLING_EPS``)."""


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    sampling_seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    json_schema: str | None = None
    regex: str | None = None
    ebnf: str | None = None

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"sampling_params.{name} must be a finite number, got {value}")
        if self.max_new_tokens < 0:
            raise ValueError(f"sampling_params.max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"sampling_params.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling_params.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"sampling_params.top_k must be -1 (off) or >= 1, got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"sampling_params.min_p must be in [0, 1], got {self.min_p}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise ValueError(f"sampling_params.{name} must be in [-2, 2], got {getattr(self, name)}")
        if not 0 < self.repetition_penalty <= 2:
            raise ValueError(f"sampling_params.repetition_penalty must be in (0, 2], got {self.repetition_penalty}")
        if self.sampling_seed is not None and not -(2**63) <= self.sampling_seed < 2**64:
            raise ValueError(f"sampling_params.sampling_seed must fit in 64 bits, got {self.sampling_seed}")
        if any(s == "" for s in self.stop):
            raise ValueError("sampling_params.stop: an empty stop string would end every generation at once")
        if sum(x is not None for x in (self.json_schema, self.regex, self.ebnf)) > 1:
            raise ValueError("sampling_params: give at most one of json_schema, regex, ebnf")

    @property
    def greedy(self) -> bool:
        # As SGLang: a temperature under 1e-6 is greedy (dividing the logits by it would overflow them).
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.regex is not None or self.ebnf is not None


class ReqState(Enum):
    WAITING = "waiting"
    PREFILLING = "prefilling"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class HiddenCapture:
    layers: tuple[int, ...]
    last_k: int
    rows: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    prompt: dict[int, torch.Tensor] | None = None

    def push(self, layer: int, rows: torch.Tensor) -> None:
        kept = self.rows.setdefault(layer, [])
        kept.extend(rows.unbind(0))
        del kept[: max(0, len(kept) - self.last_k)]

    def snapshot(self) -> dict[int, torch.Tensor]:
        return {layer: torch.stack(rows) for layer, rows in self.rows.items()}


def capture_for(layers: list[int] | None, last_k: int | None, n_layers: int) -> HiddenCapture:
    """The capture a request asks for (default: the last layer, 3 positions); ValueError naming the field."""
    chosen = tuple(layers) if layers else (n_layers - 1,)
    for layer in chosen:
        if not 0 <= layer < n_layers:
            raise ValueError(f"hidden_states_layers: layer {layer} out of range 0..{n_layers - 1}")
    k = last_k or 3
    if k < 1:
        raise ValueError(f"hidden_states_last_k must be >= 1, got {k}")
    return HiddenCapture(layers=chosen, last_k=k)


@dataclass(eq=False)
class Req:
    """One generation request as the scheduler sees it."""

    rid: str
    input_ids: list[int]
    """Full prompt ids (for a session turn: the session's ids + the new delta)."""
    params: SamplingParams
    stream: bool = False
    session_id: str | None = None
    """Streaming session this turn belongs to."""
    radix_session_id: str | None = None
    """Soft radix-session reference (top-level ``session_id``)."""
    capture: HiddenCapture | None = None
    priority: int = 0
    """Admission order among waiting requests: larger first, FCFS among equals (0 when the server does
    not schedule by priority)."""
    top_logprobs_num: int = -1
    """-1: no logprobs; 0: the chosen token's logprob; k > 0: also the top-k alternatives."""
    logprob_start: int = -1
    """First prompt position whose logprob to return (``logprob_start_len``); -1: none. Prompt tokens from
    there on are recomputed, never read from the cache, since their logits are needed."""
    logprob_text: bool = False
    """Logprob entries carry the token's text (``return_text_in_logprobs``)."""

    # --- filled by the scheduler -------------------------------------------------------------
    state: ReqState = ReqState.WAITING
    output_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    prefix_node: Node | None = None
    """Locked radix node covering the reused prefix."""
    slots: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    """Pool slots of every token with computed KV, in position order (prefix + computed so far)."""
    n_prefix: int = 0
    """Leading slots owned by the radix cache (not by this request)."""
    prefill_done: int = 0
    """Prompt tokens whose KV is in ``slots``."""
    grammar: Any = None
    generator: torch.Generator | None = None
    text: str = ""
    finish_reason: dict[str, Any] | None = None
    retractions: int = 0
    output_logprobs: list[tuple[float, int]] = field(default_factory=list)
    input_logprobs: list[tuple[float | None, int]] = field(default_factory=list)
    """(logprob, token) of prompt tokens from ``logprob_start`` on; the first logprob is None (SGLang's shape)."""
    output_top_logprobs: list[list[tuple[float, int]]] = field(default_factory=list)
    batch_size_sum: int = 0
    decode_steps: int = 0

    created: float = field(default_factory=time.monotonic)
    prefill_started: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None

    loop: asyncio.AbstractEventLoop | None = None
    queue: asyncio.Queue | None = None
    """Events to the HTTP handler: ("token", None) per step, ("done", None) at the end."""

    @property
    def seq_ids(self) -> list[int]:
        return self.input_ids + self.output_ids

    @property
    def finished(self) -> bool:
        return self.state is ReqState.FINISHED

    def notify(self, kind: str) -> None:
        if self.loop is not None and self.queue is not None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, kind)
