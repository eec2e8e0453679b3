"""Fit the `sim` executor's per-kernel GPU cost model on Vidur's measured operator timings and print
predicted vs measured per-layer and per-operator time at every measured token count.

    python bench/sim_fit.py                       # the tables (docs/engine.md, "Simulator cost model")
    python bench/sim_fit.py --all                 # the per-layer table at every token count, not only 2^k and 512s
    python bench/sim_fit.py --write               # also rewrite telemetry/data/hw_calibration.json

H100 is fitted on Llama-2-7B and checked on Llama-2-70B (held out); A100 is fitted on Llama-3-8B
(its only model) and checked on tensor-parallel shards. The error summaries cover every measured token
count whatever the flags. No GPU needed; a few seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
from importlib import resources
from pathlib import Path
from statistics import median

from options import BenchParser

from interleaf.telemetry.gpu_cost import (
    KernelCalibration,
    OperatorTimings,
    kernel_time,
    layer_errors,
    load_vidur,
)
from interleaf.telemetry.hardware_profile import CALIBRATION_FILE, VIDUR_FITS, fit_shipped_calibrations

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vidur"

CHECKS = {
    "H100-SXM": [("h100-Llama-2-7b-hf-mlp.csv", 1, "fitted"), ("h100-Llama-2-70b-hf-mlp.csv", 1, "held out"),
                 ("h100-Llama-2-70b-hf-mlp.csv", 8, "held out, TP 8 shard"),
                 ("h100-Llama-2-7b-hf-mlp.csv", 4, "TP 4 shard")],
    "A100": [("a100-Meta-Llama-3-8B-mlp.csv", 1, "fitted"), ("a100-Meta-Llama-3-8B-mlp.csv", 2, "TP 2 shard"),
             ("a100-Meta-Llama-3-8B-mlp.csv", 8, "TP 8 shard")],
}  # fmt: skip


def shown(n: int, all_counts: bool) -> bool:
    return all_counts or n & (n - 1) == 0 or (n % 512 == 0 and n <= 4096)


def op_errors(cal: KernelCalibration, data: OperatorTimings) -> dict[str, dict[int, float]]:
    """Operator -> token count -> predicted / measured − 1."""
    out: dict[str, dict[int, float]] = {}
    for n, measured in data.seconds.items():
        for op, spec in data.shape.kernels(n):
            out.setdefault(op, {})[n] = kernel_time(cal, spec, data.shape.dtype_bytes) / measured[op] - 1
    return out


def max_median(err: dict[int, float]) -> str:
    """``max (at n) · median`` of |err|."""
    worst = max(err, key=lambda n: abs(err[n]))
    return f"{abs(err[worst]):.1%} ({worst:,}) · {median(abs(e) for e in err.values()):.1%}"


def monotone_floor(data: OperatorTimings) -> tuple[float, int, int]:
    """The least max |predicted / measured − 1| that any prediction never falling as tokens grow can reach
    (``gpu_cost.layer_time`` is one), with the two token counts that set it: a smaller batch measured
    slower than a larger one (a kernel pick for one shape) must be missed by at least
    ``(slow − fast) / (slow + fast)`` at one of the two."""
    best, pair = 0.0, (0, 0)
    slowest, at = 0.0, 0
    for n in sorted(data.seconds):
        t = data.layer_seconds(n)
        if slowest > t and (slowest - t) / (slowest + t) > best:
            best, pair = (slowest - t) / (slowest + t), (at, n)
        if t > slowest:
            slowest, at = t, n
    return best, *pair


def main() -> None:
    ap = BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"Vidur's CSVs (default {DEFAULT_DATA})")
    ap.add_argument("--all", action="store_true", help="print the per-layer table at every token count")
    ap.add_argument("--write", action="store_true", help=f"rewrite telemetry/data/{CALIBRATION_FILE}")
    args = ap.parse_args()
    if not args.data.is_dir():
        ap.fail("--data", args.data, "not a directory (it holds Vidur's *-mlp.csv files; see its README)")
    missing = sorted({f for checks in CHECKS.values() for f, _, _ in checks if not (args.data / f).is_file()})
    if missing:
        ap.fail("--data", args.data, f"has no {', '.join(missing)} (Vidur's profiling data; see its README)")

    cals = fit_shipped_calibrations(args.data, fitted=datetime.date.today().isoformat())
    for name, cal in cals.items():
        how = f"fitted on {VIDUR_FITS[name]}" if name in VIDUR_FITS else cal.fitted
        tiles = " ".join(f"{tm}x{tn}" for tm, tn in cal.gemm_tiles)
        print(
            f"{name:9s} F {cal.flops_per_s / 1e12:6.1f} TFLOP/s  B_w {cal.weight_bytes_per_s / 1e12:.3f} TB/s  "
            f"B_e {cal.elementwise_bytes_per_s / 1e12:.3f} TB/s  c_w {cal.gemm_overhead_s * 1e6:.2f} us  "
            f"c_e {cal.elementwise_overhead_s * 1e6:.2f} us  SMs {cal.sm_count}  tiles {tiles}  ({how})"
        )

    summary: list[str] = []
    for gpu, checks in CHECKS.items():
        cal = cals[gpu]
        loaded = [(load_vidur(args.data / f, tp), f, tp, role) for f, tp, role in checks]
        main_rows = [(d, f, role) for d, f, tp, role in loaded if tp == 1]
        print(f"\n## {gpu}: one layer's time, predicted vs measured (µs)\n")
        heads = [f"{f.split('-mlp')[0]} ({role}) meas / pred / err" for _, f, role in main_rows]
        print("| tokens | " + " | ".join(heads) + " |")
        print("|---:|" + "---:|" * len(main_rows))
        errs = [layer_errors(cal, d) for d, _, _ in main_rows]
        for n in sorted(main_rows[0][0].seconds):
            if not shown(n, args.all):
                continue
            cells = []
            for (d, _, _), err in zip(main_rows, errs, strict=True):
                if n in d.seconds:
                    m = d.layer_seconds(n) * 1e6
                    cells.append(f"{m:,.0f} / {m * (1 + err[n]):,.0f} / {err[n]:+.1%}")
                else:
                    cells.append("–")
            print(f"| {n:,} | " + " | ".join(cells) + " |")

        for d, f, tp, role in loaded:
            err = layer_errors(cal, d)
            within = sum(abs(e) <= 0.10 for e in err.values()) / len(err)
            floor, slow, fast = monotone_floor(d)
            summary.append(f"| {gpu} | {f.split('-mlp')[0]} TP {tp} ({role}) | {len(err)} | {max_median(err)} | "
                           f"{within:.0%} | {floor:.1%} ({slow:,} vs {fast:,}) |")  # fmt: skip

        print(f"\n### {gpu}: per operator, every measured token count: max |err| (at tokens) · median |err|\n")
        print("| operator | " + " | ".join(f"{f.split('-mlp')[0]} ({role})" for _, f, role in main_rows) + " |")
        print("|---|" + "---:|" * len(main_rows))
        per_op = [op_errors(cal, d) for d, _, _ in main_rows]
        for op in per_op[0]:
            print(f"| {op} | " + " | ".join(max_median(e[op]) for e in per_op) + " |")

    print("\n## One layer, every measured token count\n")
    print("| GPU | data | token counts | max \\|err\\| (at tokens) · median | within 10% | "
          "floor for any model monotone in tokens |")  # fmt: skip
    print("|---|---|---:|---:|---:|---|")
    print("\n".join(summary))

    if args.write:
        path = Path(str(resources.files("interleaf.telemetry").joinpath("data", CALIBRATION_FILE)))
        path.write_text(json.dumps({k: v.model_dump(exclude_none=True) for k, v in cals.items()}, indent=2) + "\n")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
