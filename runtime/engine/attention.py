"""Decode attention over the KV pool that reads a long context in place instead of copying it.

Two implementations of one computation. ``NativeDecodeAttention`` runs the C kernel in
attention_kernel.c (built on first use with the system's C compiler, cached under the interleaf cache
directory): every long row of a layer in one call, each key and value read once where it lies, one
fork-join. ``SegmentedAttention`` is the pure-torch fallback when no compiler is there, and the path for
bf16 pools; it works as follows.

A sequence's keys sit in pool slots that are mostly contiguous runs: a prompt is prefilled into the
slots one allocation hands out, and the radix cache shares such runs between sequences by slot index.
Only decode tokens scatter (a decode step allocates one slot per running sequence). So one sequence's
single query attends to each long run through a view of the pool (no copy), gathers the few scattered
slots into a small reused buffer, and takes one exact softmax over the concatenated scores: the scores
are 9 floats per key against its 768 bytes of keys (fp32), so concatenating them costs nothing next to
the matmuls, and no log-sum-exp merge of per-run softmaxes is needed. The pool is head-major,
``(kv_heads, slots, head_dim)`` per layer, so a run of one KV head is one contiguous matrix, which the
BLAS reads at close to twice the rate of a slot-major stride.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from interleaf.settings import cache_dir

_log = logging.getLogger("interleaf.engine")

KERNEL_SOURCE = Path(__file__).with_name("attention_kernel.c")
"""The native decode-attention kernel's source, compiled for the machine it runs on."""

_CFLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")

MIN_RUN = 64
"""Contiguous runs of at least this many slots are read in place; shorter ones are gathered: a run costs
two more matmul calls (~10 µs each), a gathered slot a 1.5 kB copy. Chosen from those costs, not tuned."""


@dataclass
class KeySegments:
    """Where one sequence's keys lie in the pool, in an order attention does not depend on."""

    runs: list[tuple[int, int]]
    """``[start, end)`` slot ranges of the contiguous runs read in place."""
    scattered: torch.Tensor
    """(m,) int64 slots outside those runs, gathered each layer (may be empty)."""

    @property
    def n_keys(self) -> int:
        """Keys attended to: the runs' slots and the scattered ones."""
        return sum(b - a for a, b in self.runs) + int(self.scattered.numel())


def key_segments(slots: torch.Tensor, min_run: int = MIN_RUN) -> KeySegments:
    """Split a sequence's slots (position order) into runs of ``min_run`` or more consecutive slots and the rest."""
    n = int(slots.numel())
    if n == 0:
        return KeySegments([], slots)
    # A run starts where the slot is not its predecessor + 1.
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = slots[1:] != slots[:-1] + 1
    first = torch.nonzero(starts).flatten()
    lengths = torch.diff(first, append=torch.tensor([n]))
    long = lengths >= min_run
    if not bool(long.any()):
        return KeySegments([], slots)
    runs = [
        (int(slots[i]), int(slots[i]) + int(m))
        for i, m in zip(first[long].tolist(), lengths[long].tolist(), strict=True)
    ]
    in_run = torch.repeat_interleave(long, lengths)
    return KeySegments(runs, slots[~in_run])


class SegmentedAttention:
    """One sequence's single-query attention over its ``KeySegments``, with reused gather buffers."""

    def __init__(self, pool_dtype: torch.dtype):
        self.pool_dtype = pool_dtype
        self._k = self._v = torch.empty(0, dtype=pool_dtype)
        self._k32 = self._v32 = torch.empty(0)

    def __call__(
        self, q: torch.Tensor, k_layer: torch.Tensor, v_layer: torch.Tensor, keys: KeySegments
    ) -> torch.Tensor:
        """``softmax(q Kᵀ) V`` for ``q`` (kv_heads, group, head_dim) fp32, already scaled by head_dim^-0.5.

        ``k_layer``/``v_layer`` are one layer's pool, (kv_heads, slots, head_dim); query heads
        ``h*group .. h*group+group-1`` share KV head ``h`` (transformers' repeat_kv order). Returns
        (kv_heads, group, head_dim) fp32.
        """
        ks = [k_layer[:, a:b] for a, b in keys.runs]
        vs = [v_layer[:, a:b] for a, b in keys.runs]
        if keys.scattered.numel():
            k, v = self._gather(k_layer, v_layer, keys.scattered)
            ks.append(k)
            vs.append(v)
        if self.pool_dtype != torch.float32:  # the matmuls and the softmax run in fp32, as the query does
            ks, vs = self._upcast(ks, vs)
        if len(ks) == 1:
            probs = torch.softmax(torch.matmul(q, ks[0].transpose(1, 2)), dim=-1)
            return torch.matmul(probs, vs[0])
        probs = torch.softmax(torch.cat([torch.matmul(q, k.transpose(1, 2)) for k in ks], dim=-1), dim=-1)
        out, at = None, 0
        for v in vs:
            p = probs[:, :, at : at + v.shape[1]]
            out = torch.matmul(p, v) if out is None else torch.baddbmm(out, p, v)
            at += v.shape[1]
        assert out is not None
        return out

    def _gather(
        self, k_layer: torch.Tensor, v_layer: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values at ``slots`` as (kv_heads, m, head_dim) views of buffers reused across calls
        (grown, never shrunk), so that no step allocates and page-faults context-sized tensors."""
        heads, m, d = k_layer.shape[0], int(slots.numel()), k_layer.shape[2]
        if self._k.numel() < heads * m * d:
            grown = max(heads * m * d, 2 * self._k.numel())
            self._k, self._v = (torch.empty(grown, dtype=self.pool_dtype) for _ in range(2))
        k = torch.index_select(k_layer, 1, slots, out=self._k[: heads * m * d].view(heads, m, d))
        v = torch.index_select(v_layer, 1, slots, out=self._v[: heads * m * d].view(heads, m, d))
        return k, v

    def _upcast(self, ks: list[torch.Tensor], vs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every segment copied into one fp32 buffer (kv_heads, n, head_dim): a single segment after."""
        heads, d = ks[0].shape[0], ks[0].shape[2]
        n = sum(k.shape[1] for k in ks)
        if self._k32.numel() < heads * n * d:
            grown = max(heads * n * d, 2 * self._k32.numel())
            self._k32, self._v32 = torch.empty(grown), torch.empty(grown)
        k32 = self._k32[: heads * n * d].view(heads, n, d)
        v32 = self._v32[: heads * n * d].view(heads, n, d)
        at = 0
        for k, v in zip(ks, vs, strict=True):
            k32[:, at : at + k.shape[1]].copy_(k)
            v32[:, at : at + k.shape[1]].copy_(v)
            at += k.shape[1]
        return [k32], [v32]


class NativeDecodeAttention:
    """The C kernel over every long row of one layer: OpenMP over (row, KV head), fp32 pools only."""

    def __init__(self, library: ctypes.CDLL):
        fn = library.decode_attention
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        fn.argtypes = [ptr, ptr, ptr, i64, ptr, ptr, i64, i64, i64, i64, i64, ptr, ptr]
        fn.restype = ctypes.c_int
        self._fn = fn

    def __call__(
        self,
        q: torch.Tensor,
        k_layer: torch.Tensor,
        v_layer: torch.Tensor,
        slots: torch.Tensor,
        lens: torch.Tensor,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        """``softmax(q Kᵀ) V`` per row for ``q`` (rows, kv_heads, group, head_dim) fp32, pre-scaled.

        ``k_layer``/``v_layer``: one layer's pool (kv_heads, slots, head_dim), contiguous fp32; ``slots``
        (rows, width) int64 contiguous, row r attending to its first ``lens[r]`` slots, every one inside the
        pool (the caller checks: the kernel does not); ``scores`` a (rows, kv_heads, group, width) fp32
        scratch. Returns (rows, kv_heads, group, head_dim) fp32.
        """
        rows, heads, group, dim = q.shape
        for name, t in (("q", q), ("k_layer", k_layer), ("v_layer", v_layer), ("scores", scores)):
            if t.dtype != torch.float32 or not t.is_contiguous():
                raise ValueError(f"{name} must be a contiguous float32 tensor, got {t.dtype} strides {t.stride()}")
        if slots.dtype != torch.int64 or lens.dtype != torch.int64 or not slots.is_contiguous():
            raise ValueError("slots and lens must be contiguous int64 tensors")
        out = torch.empty_like(q)
        status = self._fn(q.data_ptr(), k_layer.data_ptr(), v_layer.data_ptr(), k_layer.stride(0), slots.data_ptr(),
                          lens.data_ptr(), slots.shape[1], rows, heads, group, dim, scores.data_ptr(),
                          out.data_ptr())  # fmt: skip
        if status != 0:
            raise ValueError(f"attention_kernel.c supports query groups <= 16 and head_dim <= 256, got {group}, {dim}")
        return out


@functools.cache
def native_decode_attention() -> NativeDecodeAttention | None:
    """The kernel built for this machine, or None (logged once) when it cannot be built, e.g. no C compiler.

    Built with ``$CC`` (default ``cc``) into ``<cache dir>/kernels/``, named by a hash of the source, the
    flags and this CPU's feature flags (``-march=native`` code must not run on another CPU sharing the
    cache); compiled to a temporary file and renamed, so concurrent first uses do not see a partial file.
    Loaded after torch, so its OpenMP references bind to the libgomp torch already loaded: one thread pool.
    """
    source = KERNEL_SOURCE.read_bytes()
    compiler = os.environ.get("CC", "cc")
    key = hashlib.sha256(source + " ".join((compiler, *_CFLAGS, _cpu_flags())).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"attention_kernel-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                subprocess.run([compiler, *_CFLAGS, "-o", str(built), str(KERNEL_SOURCE)], check=True,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
                os.replace(built, target)
        return NativeDecodeAttention(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else e
        _log.warning("native decode attention unavailable (%s); long-context decode uses the torch path: %s",
                     KERNEL_SOURCE.name, detail)  # fmt: skip
        return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


__all__ = [
    "KERNEL_SOURCE",
    "MIN_RUN",
    "KeySegments",
    "NativeDecodeAttention",
    "SegmentedAttention",
    "key_segments",
    "native_decode_attention",
]
