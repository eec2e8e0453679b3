"""How many KV tokens the model executor's pool holds when ``--max-total-tokens`` is unset.

As SGLang's ``--mem-fraction-static``: the pool takes that fraction of the memory available when
the engine starts (on CPU: ``MemAvailable``, after the weights are loaded), divided by one token's
K and V across all layers. Bounded below by ``MIN_KV_TOKENS`` (one long conversation must fit) and
above by ``max_running_requests × context_length`` (more could never be used at once). The engine
logs the size and the sum at start; ``/server_info`` reports it as ``max_total_num_tokens``, which
is what the client's KV budget is a fraction of.

The default fraction (0.1) is modest because a CPU box is shared with Ray, Redis, the workers and
the sandbox, unlike a GPU the server owns: on 24 GiB with ~22 GiB free it gives ~48k tokens of
SmolLM2-135M in fp32 (46 KiB per token), three times the old fixed 16384, so the README's job's
episodes are all admitted without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MEM_FRACTION_STATIC = 0.1
"""Share of the available memory the KV pool takes when nothing else is said."""
MIN_KV_TOKENS = 8192
"""Never smaller: one episode of the default budgets (4096 tokens) twice over."""


@dataclass(frozen=True)
class KVSizing:
    """The pool size and how it was arrived at (logged at start)."""

    tokens: int
    """KV slots in the pool (``max_total_num_tokens``)."""
    bytes_per_token: int
    """K and V of one token across all layers."""
    available_bytes: int
    """Memory available when the engine started."""
    mem_fraction_static: float
    """The share of ``available_bytes`` the pool was given."""
    bound: str
    """``memory`` (the fraction decided), ``floor`` (``MIN_KV_TOKENS``) or ``ceiling``
    (``max_running_requests × context_length``)."""

    def describe(self) -> str:
        gib = self.tokens * self.bytes_per_token / 2**30
        return (f"KV pool {self.tokens} tokens ({gib:.2f} GiB, {self.bytes_per_token} B/token): "
                f"--mem-fraction-static {self.mem_fraction_static} of {self.available_bytes / 2**30:.1f} GiB "
                f"available" + ("" if self.bound == "memory" else f", held at the {self.bound}"))  # fmt: skip


def bytes_per_token(n_layers: int, n_kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """K and V of one token across all layers."""
    return 2 * n_layers * n_kv_heads * head_dim * dtype_bytes


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def size_kv_pool(
    per_token: int,
    *,
    mem_fraction_static: float = DEFAULT_MEM_FRACTION_STATIC,
    max_tokens_used: int | None = None,
    available_bytes: int | None = None,
) -> KVSizing:
    """The pool size for ``per_token`` bytes a token, ``mem_fraction_static`` of the available memory."""
    if not 0 < mem_fraction_static < 1:
        raise ValueError(f"--mem-fraction-static must be in (0, 1), got {mem_fraction_static}")
    if per_token <= 0:
        raise ValueError(f"bytes per KV token must be positive, got {per_token}")
    avail = available_memory() if available_bytes is None else available_bytes
    tokens, bound = int(avail * mem_fraction_static) // per_token, "memory"
    if max_tokens_used is not None and tokens > max_tokens_used:
        tokens, bound = max_tokens_used, "ceiling"
    if tokens < MIN_KV_TOKENS:
        tokens, bound = MIN_KV_TOKENS, "floor"
    return KVSizing(tokens, per_token, avail, mem_fraction_static, bound)


__all__ = [
    "DEFAULT_MEM_FRACTION_STATIC",
    "MIN_KV_TOKENS",
    "KVSizing",
    "available_memory",
    "bytes_per_token",
    "size_kv_pool",
]
