"""A per-kernel GPU cost model calibrated on measured operator timings, and its fit.

One transformer layer is the kernels Vidur measures (github.com/microsoft/vidur; copies in
``../shared/data/vidur``): four GEMMs (QKV, O, MLP up+gate, MLP down) and five elementwise kernels
(two RMSNorms, rotary embedding, SiLU-and-multiply, residual add). A kernel takes

- GEMM ``n × k → o``: ``max_p(flops_eff / F, bytes / B_w) + c_w``, where ``max_p(a, b) = (a^p + b^p)^(1/p)``,
  ``bytes`` = weights + input + output activations (bf16), and ``flops_eff`` = ``2·k`` × the output tiles'
  area as the GPU spends it: with fewer tiles than SMs the kernel splits ``k`` over the idle SMs (split-K,
  nothing wasted beyond the tiles' padding); with more, whole waves of tiles over the SMs. The tile shape
  is the one of the GPU architecture's (``GEMM_TILES``) that finishes first;
- elementwise: ``bytes / B_e + c_e``.

``F``, ``B_w``, ``B_e``, ``c_w``, ``c_e`` are fitted per GPU (``fit_calibration``) by robust least squares
on log time over every operator and token count; ``p`` and the tile shapes are fixed (docs/engine.md,
"Simulator cost model", says why). ``bench/sim_fit.py`` prints the fit table and writes the constants to
``telemetry/data/hw_calibration.json``, from where ``interleaf.telemetry.HardwareProfile.calibration``
reads them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from pydantic import BaseModel, Field, PositiveInt

SMOOTHNESS = 4.0
"""Exponent ``p`` of the smooth max joining a GEMM's compute and memory time. Not identifiable from one
model's data (cuBLAS's kernel picks dominate the ridge); 4 is the value that fits both H100 models."""

GEMM_TILES: dict[str, tuple[tuple[int, int], ...]] = {
    "hopper": ((128, 128), (128, 256), (256, 128)),
    "ampere": ((64, 128), (128, 128), (128, 256), (256, 128)),
}
"""Output tile shapes (tokens × features) the model lets a GEMM run with, per GPU architecture. A modelling
choice, not read from cuBLAS: H100's measured steps sit at multiples of 128 tokens (smaller tiles would
smooth them away), A100's fit better with 64-row tiles too (docs/engine.md, "Simulator cost model")."""

GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")
LAYER_OPS = GEMM_OPS + ELEMENTWISE_OPS
"""The operators of one layer in Vidur's files (its ``emb`` is once per model, not per layer)."""


class KernelCalibration(BaseModel):
    """Fitted per-kernel constants of one GPU (bf16), with where they come from."""

    flops_per_s: float = Field(gt=0)
    """Effective GEMM FLOP/s (``F``) once a kernel fills whole waves of tiles."""
    weight_bytes_per_s: float = Field(gt=0)
    """Effective GEMM read bandwidth (``B_w``): weights plus activations, bytes/s."""
    elementwise_bytes_per_s: float = Field(gt=0)
    """Effective bandwidth of elementwise kernels (``B_e``: norms, rotary, activation, residual add)."""
    gemm_overhead_s: float = Field(ge=0)
    """Fixed time per GEMM kernel (``c_w``), seconds: what a one-token GEMM costs beyond its reads."""
    elementwise_overhead_s: float = Field(ge=0)
    """Fixed time per elementwise kernel (``c_e``), seconds."""
    sm_count: int = Field(gt=0)
    """Streaming multiprocessors (the wave size of GEMM tiles)."""
    gemm_tiles: tuple[tuple[PositiveInt, PositiveInt], ...] = Field(min_length=1)
    """Output tile shapes (tokens × features) the GPU's GEMM kernels run with (``GEMM_TILES``)."""
    smoothness: float = Field(default=SMOOTHNESS, gt=0)
    """Exponent ``p`` of the smooth max of a GEMM's compute and memory time."""
    source: str
    """Where the timings come from (data set, files, model and tensor-parallel degree fitted on)."""
    fitted: str
    """Date of the fit (ISO), or how the constants were derived when not fitted on this GPU's own data."""
    derived_from: str | None = None
    """For a GPU without measurements: the profile whose calibration was scaled by the peaks' ratio."""
    max_layer_error: float | None = None
    """Largest |predicted / measured − 1| of one layer's time over every token count of the fitted data."""


@dataclass(frozen=True)
class LayerShape:
    """What one dense decoder layer's kernels depend on (one tensor-parallel shard when ``tp > 1``)."""

    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    gated: bool = True
    tp: int = 1
    dtype_bytes: int = 2

    def kernels(self, n: int) -> list[tuple[str, tuple[int, int, int] | float]]:
        """``(op, (n, k, o))`` for GEMMs and ``(op, bytes)`` for elementwise kernels at ``n`` tokens."""
        b, t = self.dtype_bytes, self.tp
        q = self.n_heads * self.head_dim // t
        kv = self.n_kv_heads * self.head_dim // t
        ff = self.d_ff // t
        d = self.d_model
        return [
            ("attn_pre_proj", (n, d, q + 2 * kv)),
            ("attn_post_proj", (n, q, d)),
            ("mlp_up_proj", (n, d, ff * (2 if self.gated else 1))),
            ("mlp_down_proj", (n, ff, d)),
            ("input_layernorm", float(b * 2 * n * d)),  # read, write
            ("attn_rope", float(b * 2 * n * (q + kv))),  # q and k, in place
            ("post_attention_layernorm", float(b * 2 * n * d)),
            ("mlp_act", float(b * n * ff * (3 if self.gated else 2))),  # gate, up -> out
            ("add", float(b * 3 * n * d)),  # two reads, one write
        ]


def padded_flops(n: int, k: int, o: int, sm_count: int, tiles: Iterable[tuple[int, int]]) -> float:
    """``2·n·k·o`` as the GPU spends it, with the tile shape of ``tiles`` that spends least.

    A kernel's tiles beyond a whole number of waves leave SMs idle in the last wave (a layer at 520
    tokens takes ~1.6× its time at 512 on H100); below one wave cuBLAS splits ``k`` across the SMs
    instead, so a small GEMM wastes only its tiles' padding."""
    best = math.inf
    for tm, tn in tiles:
        count = math.ceil(n / tm) * math.ceil(o / tn)
        slots = count if count <= sm_count else math.ceil(count / sm_count) * sm_count
        best = min(best, slots * tm * tn)
    return 2.0 * k * best


def gemm_time(cal: KernelCalibration, n: int, k: int, o: int, dtype_bytes: int = 2) -> float:
    """Seconds for an ``n × k`` by ``k × o`` GEMM."""
    compute = padded_flops(n, k, o, cal.sm_count, cal.gemm_tiles) / cal.flops_per_s
    memory = dtype_bytes * (k * o + n * k + n * o) / cal.weight_bytes_per_s
    p = cal.smoothness
    return (compute**p + memory**p) ** (1 / p) + cal.gemm_overhead_s


def elementwise_time(cal: KernelCalibration, nbytes: float) -> float:
    """Seconds for an elementwise kernel moving ``nbytes``."""
    return nbytes / cal.elementwise_bytes_per_s + cal.elementwise_overhead_s


def kernel_time(cal: KernelCalibration, spec: tuple[int, int, int] | float, dtype_bytes: int = 2) -> float:
    """One entry of ``LayerShape.kernels``."""
    if isinstance(spec, tuple):
        return gemm_time(cal, *spec, dtype_bytes=dtype_bytes)
    return elementwise_time(cal, spec)


def layer_time(cal: KernelCalibration, shape: LayerShape, n: int) -> float:
    """Seconds for one layer's linear and elementwise kernels at ``n`` tokens (attention not included)."""
    return sum(kernel_time(cal, spec, shape.dtype_bytes) for _, spec in shape.kernels(n))


# ---- measured data -------------------------------------------------------------------------------


@dataclass
class OperatorTimings:
    """Median time of each operator of one layer at each token count (one file, one TP degree)."""

    name: str
    shape: LayerShape
    seconds: dict[int, dict[str, float]] = field(default_factory=dict)
    """token count -> operator -> seconds."""

    def layer_seconds(self, n: int) -> float:
        """Measured time of one layer: the sum of its operators."""
        return sum(self.seconds[n][op] for op in LAYER_OPS)


def load_vidur(path: str | Path, tp: int = 1) -> OperatorTimings:
    """Vidur's ``*-mlp.csv`` at tensor-parallel degree ``tp``: per token count, each operator's median
    (``time_stats.<op>.median``, ms); a token count profiled twice gets the median of both."""
    path = Path(path)
    rows: dict[int, list[dict[str, str]]] = {}
    shape: LayerShape | None = None
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                if int(row["num_tensor_parallel_workers"]) != tp:
                    continue
                n = int(row["num_tokens"])
                if shape is None:
                    h, d = int(row["n_head"]), int(row["n_embd"])
                    shape = LayerShape(d_model=d, n_heads=h, n_kv_heads=int(row["n_kv_head"]), head_dim=d // h,
                                       d_ff=int(row["n_expanded_embd"]), gated=row["use_gated_mlp"] == "True",
                                       tp=tp)  # fmt: skip
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}:{line}: not a Vidur MLP profile row ({e})") from e
            rows.setdefault(n, []).append(row)
    if shape is None:
        raise ValueError(f"{path}: no rows with num_tensor_parallel_workers={tp}")
    out = OperatorTimings(name=path.name, shape=shape)
    for n, group in sorted(rows.items()):
        out.seconds[n] = {op: median(float(r[f"time_stats.{op}.median"]) for r in group) * 1e-3 for op in LAYER_OPS}
    return out


# ---- fit ------------------------------------------------------------------------------------------


def layer_errors(cal: KernelCalibration, data: OperatorTimings) -> dict[int, float]:
    """Token count -> predicted / measured − 1 of one layer's time, at every token count of ``data``."""
    return {n: layer_time(cal, data.shape, n) / data.layer_seconds(n) - 1 for n in data.seconds}


def fit_calibration(data: Sequence[OperatorTimings], *, sm_count: int, gemm_tiles: Sequence[tuple[int, int]],
                    source: str, fitted: str) -> KernelCalibration:  # fmt: skip
    """Fit ``F, B_w, B_e, c_w, c_e`` to every operator at every token count of ``data``.

    Residuals are ``log(predicted / measured)`` (every token count weighs the same, 1 µs kernels as much
    as 1 ms ones) under a Cauchy loss of scale 0.05: cuBLAS now and then picks a kernel 30–60% slower
    for one shape, and those points should not drag the rest."""
    import numpy as np
    from scipy.optimize import least_squares

    tiles = tuple((int(tm), int(tn)) for tm, tn in gemm_tiles)
    points = [(spec, t[op], d.shape.dtype_bytes) for d in data for n, t in d.seconds.items()
              for op, spec in d.shape.kernels(n)]  # fmt: skip

    def calibration(x: Iterable[float]) -> KernelCalibration:
        f, bw, be, cw, ce = (float(v) for v in np.exp(np.asarray(list(x))))
        return KernelCalibration(flops_per_s=f, weight_bytes_per_s=bw, elementwise_bytes_per_s=be,
                                 gemm_overhead_s=cw, elementwise_overhead_s=ce, sm_count=sm_count,
                                 gemm_tiles=tiles, source=source, fitted=fitted)  # fmt: skip

    def residuals(x: np.ndarray) -> np.ndarray:
        cal = calibration(x)
        return np.array([math.log(kernel_time(cal, spec, b) / t) for spec, t, b in points])

    x0 = np.log([500e12, 2e12, 1.5e12, 3e-6, 3e-6])
    sol = least_squares(residuals, x0, loss="cauchy", f_scale=0.05, x_scale=1.0, xtol=1e-12, ftol=1e-12)
    cal = calibration(sol.x)
    # Round to 4 significant figures: the shipped JSON stays readable and a re-fit reproduces it exactly.
    rounded = {k: float(f"{getattr(cal, k):.4g}") for k in ("flops_per_s", "weight_bytes_per_s",
               "elementwise_bytes_per_s", "gemm_overhead_s", "elementwise_overhead_s")}  # fmt: skip
    cal = cal.model_copy(update=rounded)
    worst = max(abs(e) for d in data for e in layer_errors(cal, d).values())
    return cal.model_copy(update={"max_layer_error": round(worst, 4)})


def scaled_calibration(cal: KernelCalibration, *, peak_flops_ratio: float, bandwidth_ratio: float, sm_count: int,
                       derived_from: str) -> KernelCalibration:  # fmt: skip
    """A calibration for a GPU of the same architecture without its own measurements: throughputs scaled by
    the ratio of datasheet peaks (so the fitted efficiencies carry over), overheads unchanged."""
    return cal.model_copy(update={
        "flops_per_s": float(f"{cal.flops_per_s * peak_flops_ratio:.4g}"),
        "weight_bytes_per_s": float(f"{cal.weight_bytes_per_s * bandwidth_ratio:.4g}"),
        "elementwise_bytes_per_s": float(f"{cal.elementwise_bytes_per_s * bandwidth_ratio:.4g}"),
        "sm_count": sm_count,
        "derived_from": derived_from,
        "fitted": f"scaled from {derived_from} by datasheet peaks (not measured)",
        "max_layer_error": None,
    })  # fmt: skip


__all__ = [
    "ELEMENTWISE_OPS",
    "GEMM_OPS",
    "GEMM_TILES",
    "LAYER_OPS",
    "KernelCalibration",
    "LayerShape",
    "OperatorTimings",
    "elementwise_time",
    "fit_calibration",
    "gemm_time",
    "kernel_time",
    "layer_errors",
    "layer_time",
    "load_vidur",
    "padded_flops",
    "scaled_calibration",
]
