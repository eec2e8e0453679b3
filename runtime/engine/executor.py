"""The executor: what runs the forward pass behind the scheduler, and the registry that builds one by name.

An executor owns the model (or a model of it): the forward pass, the tokenizer, the token ids that
end generation and the limits the scheduler and the server enforce (context length, KV capacity).
Everything they use is declared on ``Executor``; nothing probes an executor for optional
attributes. ``--executor NAME`` picks a factory registered with ``@register_executor(NAME)``:
``model`` (llama.py, the real model on CPU) and ``sim`` (sim.py, a roofline model of a GPU).

This module imports neither torch nor the executors themselves: listing the names (CLI, config
validation) stays cheap, and a built-in executor's module is imported the first time it is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from interleaf.runtime.engine.config import EngineConfig


@dataclass
class ForwardBatch:
    """One forward pass: B sequences, each feeding ``n_q`` new tokens (padded)."""

    tokens: torch.Tensor
    """(B, n_q) input token ids; padding positions hold any valid id."""
    positions: torch.Tensor
    """(B, n_q) absolute positions of the new tokens."""
    write_slots: torch.Tensor
    """(B, n_q) pool slots receiving the new tokens' K/V (0 = the padding slot)."""
    kv_slots: torch.Tensor
    """(B, L) slots of every token each sequence attends to, position order, new ones included;
    (B, 0) when the executor does not read them (``Executor.needs_kv_table`` is False)."""
    kv_len: torch.Tensor
    """(B,) number of valid entries in ``kv_slots`` per sequence."""
    logit_index: torch.Tensor
    """(B,) which query row of each sequence to compute logits for (its last real token)."""
    capture_layers: tuple[int, ...] = ()
    """Decoder layers whose output residual stream to return (all query rows)."""
    all_logits: bool = False
    """Also return the logits of every query row (``ForwardOutput.all_logits``): prompt logprobs."""


@dataclass
class ForwardOutput:
    """What one forward pass returns."""

    logits: torch.Tensor
    """(B, vocab) float32 logits of each sequence's ``logit_index`` row."""
    hidden: dict[int, torch.Tensor]
    """layer -> (B, n_q, d_model) residual stream after that layer (the batch's ``capture_layers``)."""
    all_logits: torch.Tensor | None = None
    """(B, n_q, vocab) float32 logits of every query row when ``ForwardBatch.all_logits`` asked for them."""


class Executor(Protocol):
    """A model backend: everything the scheduler and the HTTP server read from it."""

    model_name: str
    """Default served model name (``--served-model-name`` overrides it)."""
    model_path: str
    """``model_path`` reported by ``/model_info``: a model directory, or ``sim://<model>``. Clients load
    the tokenizer from it (``interleaf.runtime.tokenizer.load_tokenizer``)."""
    tokenizer: Any
    """A Hugging Face tokenizer, or ``ByteTokenizer`` on the simulator (``encode``, ``decode``,
    ``apply_chat_template``, ``eos_token_id``)."""
    eos_token_ids: list[int]
    """Ids that end generation unless the request sets ``ignore_eos``."""
    vocab_size: int
    """Width of the logits; request token ids must be below it."""
    n_layers: int
    """Decoder layers (``hidden_states_layers`` are checked against it)."""
    context_length: int
    """Longest sequence, prompt + output, the model supports (``max_position_embeddings``)."""
    kv_capacity: int
    """KV pool size in tokens: ``--max-total-tokens``, or the executor's default when that is unset."""
    needs_kv_table: bool
    """Whether ``forward`` reads ``ForwardBatch.kv_slots``; when False the scheduler skips building the
    (batch × context) slot table every decode step."""
    constrained_decoding: bool
    """Whether json_schema / regex / ebnf constraints work (xgrammar needs a Hugging Face tokenizer)."""
    hidden_states: bool
    """Whether ``forward`` returns the residual stream of ``capture_layers`` (``return_hidden_states``)."""
    simulated: bool
    """True when outputs are not a real model's (responses and metrics are then labelled simulated)."""

    @property
    def simulated_seconds(self) -> float | None:
        """Predicted accelerator time spent so far; None for an executor that runs for real."""
        ...

    def forward(self, batch: ForwardBatch) -> ForwardOutput:
        """Run one batched forward: write the new tokens' K/V, return logits (and captured layers)."""
        ...


ExecutorFactory = Callable[["EngineConfig"], Executor]
"""Builds an executor from the engine configuration (``--executor`` and the flags it reads)."""


class UnknownExecutor(ValueError):
    """``--executor`` names no registered executor; the message lists the names that exist."""


_BUILTIN: dict[str, str] = {"model": "interleaf.runtime.engine.llama", "sim": "interleaf.runtime.engine.sim"}
"""Executors shipped with the engine, by the module that registers each. Named here rather than
imported so that listing names never imports torch; importing the module registers the factory."""

_REGISTRY: dict[str, ExecutorFactory] = {}


def register_executor(name: str) -> Callable[[ExecutorFactory], ExecutorFactory]:
    """Register the decorated factory as ``--executor name``."""

    def decorate(factory: ExecutorFactory) -> ExecutorFactory:
        old = _REGISTRY.get(name)
        # The same function imported twice (a module reload) is not a clash; two different ones are.
        if old is not None and _qualified(old) != _qualified(factory):
            raise ValueError(f"executor {name!r} is already registered by {_qualified(old)}; pick another name")
        _REGISTRY[name] = factory
        return factory

    return decorate


def executor_names() -> list[str]:
    """Every name ``--executor`` accepts."""
    return sorted({*_BUILTIN, *_REGISTRY})


def check_executor_name(name: str) -> str:
    """``name`` if an executor is registered under it (without importing it); else ``UnknownExecutor``."""
    if name not in _REGISTRY and name not in _BUILTIN:
        raise UnknownExecutor(
            f"executor={name!r} is not a registered executor; choose one of {executor_names()} (--executor), "
            "or register a factory with @register_executor (docs/engine.md)"
        )
    return name


def executor_factory(name: str) -> ExecutorFactory:
    """The factory registered as ``name``; raises ``UnknownExecutor`` naming the choices."""
    check_executor_name(name)
    if name not in _REGISTRY:
        importlib.import_module(_BUILTIN[name])
    return _REGISTRY[name]


def create_executor(config: EngineConfig) -> Executor:
    """Build the executor ``config.executor`` names."""
    return executor_factory(config.executor)(config)


def _qualified(factory: ExecutorFactory) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"
