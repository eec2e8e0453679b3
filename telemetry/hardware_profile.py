"""Hardware roofline profiles: peak compute, peak memory bandwidth and their ratio (HOI).

Table 4 of arXiv 2604.05404 is built in; ``measure_cpu_profile()`` measures this machine instead of
guessing it (a matmul for FLOP/s, a large reduction for read bandwidth, a few seconds in all).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

REFERENCE_HARDWARE = "H100-PCIe"
"""The paper's reference hardware: α = γ / γ(H100 PCIe)."""


class HardwareProfile(BaseModel):
    """An accelerator (or CPU) as a roofline: how fast it computes and how fast it reads memory."""

    name: str
    """Profile name (the key in ``HARDWARE_PROFILES``)."""
    peak_flops: float = Field(gt=0)
    """Peak FLOP/s at the serving precision. Table 4 GPU figures are FP16/BF16 tensor-core peaks
    *with* 2:4 sparsity (as the paper uses); see ``dense_flops``."""
    mem_bw_bytes_per_s: float = Field(gt=0)
    """Peak memory read bandwidth, bytes/s (HBM for GPUs, DRAM for CPUs)."""
    memory_bytes: int | None = None
    """Device memory capacity, bytes (for KV-budget sizing in simulations); None when unknown."""
    sparsity_inclusive: bool = False
    """True when ``peak_flops`` counts 2:4 structured sparsity (Table 4 GPUs); dense is half."""
    measured: bool = False
    """True when the figures were measured on this machine rather than taken from a datasheet."""
    dtype: str = "fp16"
    """Precision the FLOP/s figure refers to (fp16, bf16, fp32)."""

    @property
    def hoi(self) -> float:
        """Hardware operational intensity (roofline ridge point), FLOPs per byte."""
        return self.peak_flops / self.mem_bw_bytes_per_s

    @property
    def dense_flops(self) -> float:
        """Peak FLOP/s without sparsity (what a dense matmul can reach at best)."""
        return self.peak_flops / 2 if self.sparsity_inclusive else self.peak_flops

    def alpha(self) -> float:
        """α = γ on this hardware ÷ γ on H100 PCIe (= HOI ratio; Table 4's last column)."""
        return self.hoi / HARDWARE_PROFILES[REFERENCE_HARDWARE].hoi


_GB = 1 << 30
HARDWARE_PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in [
        HardwareProfile(
            name="H100-PCIe",
            peak_flops=1513e12,
            mem_bw_bytes_per_s=2.0e12,
            memory_bytes=80 * _GB,
            sparsity_inclusive=True,
        ),
        # Table 4 prints 1,617 TFLOPS but its HOI of 348.1 implies 1,671 (NVIDIA's H200 sparse FP16 peak).
        HardwareProfile(
            name="H200",
            peak_flops=1671e12,
            mem_bw_bytes_per_s=4.8e12,
            memory_bytes=141 * _GB,
            sparsity_inclusive=True,
        ),
        HardwareProfile(
            name="A100",
            peak_flops=624e12,
            mem_bw_bytes_per_s=1.935e12,
            memory_bytes=80 * _GB,
            sparsity_inclusive=True,
        ),
        HardwareProfile(
            name="V100",
            peak_flops=125e12,
            mem_bw_bytes_per_s=0.90e12,
            memory_bytes=32 * _GB,
            sparsity_inclusive=False,
        ),
        HardwareProfile(
            name="RTX-4090",
            peak_flops=330e12,
            mem_bw_bytes_per_s=1.008e12,
            memory_bytes=24 * _GB,
            sparsity_inclusive=True,
        ),
    ]
}
"""Table 4 of arXiv 2604.05404 (peak TFLOPS / TB/s as printed, H200's FLOP/s corrected)."""


def find_hardware_profile(name: str) -> HardwareProfile:
    """A built-in profile by name, case- and punctuation-insensitive (``h100``, ``RTX 4090``), or
    ``cpu`` for a measured profile of this machine."""
    if name.lower() == "cpu":
        return measure_cpu_profile()
    norm = name.lower().replace(" ", "").replace("-", "").replace("_", "")
    for key, profile in HARDWARE_PROFILES.items():
        k = key.lower().replace("-", "")
        if norm in (k, k.removesuffix("pcie")):
            return profile
    raise ValueError(f"hardware={name!r} is not a built-in profile; use one of {sorted(HARDWARE_PROFILES)} or 'cpu'")


def measure_cpu_profile(
    *, dtype: str = "fp32", seconds: float = 2.0, cache_path: Path | None = None, refresh: bool = False
) -> HardwareProfile:
    """Measure this CPU's matmul FLOP/s (torch, all threads) and memory read bandwidth (a matrix-vector
    product over 256 MiB, the access pattern of a decode step).

    Each figure is the best of several repeats within about ``seconds``. The result is cached as JSON
    at ``cache_path`` (default ``<INTERLEAF_CACHE_DIR>/cpu_profile_<dtype>.json``) unless
    ``refresh``; delete the file to re-measure.
    """
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise ValueError(f"dtype={dtype!r} is not supported; use fp32, bf16 or fp16")
    if cache_path is None:
        from interleaf.settings import cache_dir

        cache_path = cache_dir() / f"cpu_profile_{dtype}.json"
    if cache_path.exists() and not refresh:
        return HardwareProfile.model_validate_json(cache_path.read_text())

    n = 1024
    a = torch.randn(n, n, dtype=torch_dtype)
    b = torch.randn(n, n, dtype=torch_dtype)
    torch.mm(a, b)
    flops = _best_rate(lambda: torch.mm(a, b), 2.0 * n**3, seconds)

    # Read bandwidth as decode sees it: a matrix-vector product streaming 256 MiB of fp32 weights
    # (far beyond any cache) once per call.
    w = torch.ones(4096, 16384, dtype=torch.float32)
    v = torch.ones(16384, dtype=torch.float32)
    torch.mv(w, v)
    bw = _best_rate(lambda: torch.mv(w, v), float(w.numel() * w.element_size()), seconds)

    profile = HardwareProfile(
        name=f"cpu-{os.cpu_count()}core-{dtype}",
        peak_flops=flops,
        mem_bw_bytes_per_s=bw,
        measured=True,
        dtype=dtype,
        memory_bytes=_total_memory(),
    )
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(profile.model_dump(), indent=2))
    except OSError:
        pass
    return profile


def _best_rate(fn, work: float, seconds: float) -> float:
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
        if runs >= 50:
            break
    return work / max(best, 1e-9)


def _total_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


__all__ = [
    "HARDWARE_PROFILES",
    "REFERENCE_HARDWARE",
    "HardwareProfile",
    "find_hardware_profile",
    "measure_cpu_profile",
]
