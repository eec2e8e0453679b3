"""Hardware roofline profiles: peak compute, peak memory bandwidth and their ratio (HOI).

Table 4 of arXiv 2604.05404 is built in; ``measure_cpu_profile()`` measures this machine instead of
guessing it (a matmul for FLOP/s, a large reduction for read bandwidth, a few seconds in all).
GPUs with measured operator timings also carry a ``calibration`` (``interleaf.telemetry.gpu_cost``),
read from ``telemetry/data/hw_calibration.json`` (written by ``bench/sim_fit.py``).
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field

from interleaf.telemetry.gpu_cost import GEMM_TILES, KernelCalibration, fit_calibration, load_vidur, scaled_calibration

REFERENCE_HARDWARE = "H100-PCIe"
"""The paper's reference hardware: α = γ / γ(H100 PCIe)."""

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
"""Bytes per element at each precision a profile's FLOP/s may refer to (``HardwareProfile.dtype``)."""


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
    sm_count: int | None = None
    """Streaming multiprocessors (GPUs; the wave size of GEMM tiles in the calibrated cost model)."""
    calibration: KernelCalibration | None = None
    """Per-kernel constants fitted on measured operator timings (``telemetry/data/hw_calibration.json``),
    or None where no measurements exist; the ``sim`` executor then falls back to guessed efficiencies."""

    @property
    def hoi(self) -> float:
        """Hardware operational intensity (roofline ridge point), FLOPs per byte."""
        return self.peak_flops / self.mem_bw_bytes_per_s

    @property
    def dtype_bytes(self) -> int:
        """Bytes per weight or KV element at ``dtype``, the precision ``peak_flops`` was taken at."""
        return DTYPE_BYTES.get(self.dtype, 2)

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
            sm_count=114,
        ),
        # Table 4 prints 1,617 TFLOPS but its HOI of 348.1 implies 1,671 (NVIDIA's H200 sparse FP16 peak).
        HardwareProfile(
            name="H200",
            peak_flops=1671e12,
            mem_bw_bytes_per_s=4.8e12,
            memory_bytes=141 * _GB,
            sparsity_inclusive=True,
            sm_count=132,
        ),
        HardwareProfile(
            name="A100",
            peak_flops=624e12,
            mem_bw_bytes_per_s=1.935e12,
            memory_bytes=80 * _GB,
            sparsity_inclusive=True,
            sm_count=108,
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

EXTRA_HARDWARE_PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in [
        # The SXM5 part Vidur's H100 timings were measured on (their 2.6-3.0 TB/s weight reads exceed the
        # PCIe card's 2.0 TB/s peak). NVIDIA datasheet: 1,979 TFLOPS FP16/BF16 with sparsity, 3.35 TB/s.
        HardwareProfile(
            name="H100-SXM",
            peak_flops=1979e12,
            mem_bw_bytes_per_s=3.35e12,
            memory_bytes=80 * _GB,
            sparsity_inclusive=True,
            sm_count=132,
        ),
    ]
}
"""Profiles beyond Table 4 (found by ``find_hardware_profile``, left out of the paper's PTE ranking)."""

CALIBRATION_FILE = "hw_calibration.json"
"""Shipped calibrations (``telemetry/data/``): profile name -> ``KernelCalibration`` fields."""


def _attach_calibrations() -> None:
    path = resources.files("interleaf.telemetry").joinpath("data", CALIBRATION_FILE)
    if not path.is_file():
        return
    for name, fields in json.loads(path.read_text()).items():
        table = next((t for t in (HARDWARE_PROFILES, EXTRA_HARDWARE_PROFILES) if name in t), None)
        if table is None:
            raise ValueError(f"{CALIBRATION_FILE}: {name!r} is not a hardware profile")
        table[name] = table[name].model_copy(update={"calibration": KernelCalibration.model_validate(fields)})


_attach_calibrations()

VIDUR_FITS = {
    "H100-SXM": "h100-Llama-2-7b-hf-mlp.csv",
    "A100": "a100-Meta-Llama-3-8B-mlp.csv",
}
"""GPU profile -> the Vidur file (tensor-parallel degree 1) its calibration is fitted on."""

GEMM_ARCHITECTURES = {"H100-SXM": "hopper", "A100": "ampere"}
"""Calibrated GPU profile -> its architecture's GEMM tile shapes (``gpu_cost.GEMM_TILES``)."""

SCALED_CALIBRATIONS = {"H100-PCIe": "H100-SXM", "H200": "H100-SXM"}
"""GPUs without measurements -> the same-architecture profile whose calibration is scaled to them."""


def fit_shipped_calibrations(data_dir: str | Path, *, fitted: str) -> dict[str, KernelCalibration]:
    """Every shipped calibration, recomputed from Vidur's files in ``data_dir`` (``bench/sim_fit.py``
    writes the result to ``telemetry/data/hw_calibration.json``; a test checks the two agree)."""
    profiles = {**HARDWARE_PROFILES, **EXTRA_HARDWARE_PROFILES}
    out: dict[str, KernelCalibration] = {}
    for name, file in VIDUR_FITS.items():
        sm = profiles[name].sm_count
        if sm is None:
            raise ValueError(f"hardware profile {name!r} needs sm_count to be calibrated")
        source = f"Vidur (github.com/microsoft/vidur) {file}, tensor parallel 1, all token counts"
        tiles = GEMM_TILES[GEMM_ARCHITECTURES[name]]
        data = [load_vidur(Path(data_dir) / file)]
        out[name] = fit_calibration(data, sm_count=sm, gemm_tiles=tiles, source=source, fitted=fitted)
    for name, base in SCALED_CALIBRATIONS.items():
        hw, ref = profiles[name], profiles[base]
        out[name] = scaled_calibration(
            out[base],
            peak_flops_ratio=hw.dense_flops / ref.dense_flops,
            bandwidth_ratio=hw.mem_bw_bytes_per_s / ref.mem_bw_bytes_per_s,
            sm_count=hw.sm_count or out[base].sm_count,
            derived_from=base,
        )
    return out


def find_hardware_profile(name: str) -> HardwareProfile:
    """A built-in profile by name, case- and punctuation-insensitive (``h100``, ``RTX 4090``), or
    ``cpu`` for a measured profile of this machine."""
    if name.lower() == "cpu":
        return measure_cpu_profile()
    norm = name.lower().replace(" ", "").replace("-", "").replace("_", "")
    for key, profile in {**HARDWARE_PROFILES, **EXTRA_HARDWARE_PROFILES}.items():
        k = key.lower().replace("-", "")
        if norm in (k, k.removesuffix("pcie")):
            return profile
    known = sorted({**HARDWARE_PROFILES, **EXTRA_HARDWARE_PROFILES})
    raise ValueError(f"hardware={name!r} is not a built-in profile; use one of {known} or 'cpu'")


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
    if torch_dtype is None or dtype not in DTYPE_BYTES:
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
    "CALIBRATION_FILE",
    "DTYPE_BYTES",
    "EXTRA_HARDWARE_PROFILES",
    "HARDWARE_PROFILES",
    "REFERENCE_HARDWARE",
    "SCALED_CALIBRATIONS",
    "VIDUR_FITS",
    "HardwareProfile",
    "find_hardware_profile",
    "fit_shipped_calibrations",
    "measure_cpu_profile",
]
