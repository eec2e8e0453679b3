"""Fit the `sim` executor's per-kernel GPU cost model on Vidur's measured operator timings and print
predicted vs measured per-layer (and per-operator) time.

    python bench/sim_fit.py                       # the tables (docs/engine.md, "Simulator cost model")
    python bench/sim_fit.py --all                 # every token count, not only powers of two and 512s
    python bench/sim_fit.py --write               # also rewrite telemetry/data/hw_calibration.json

H100 is fitted on Llama-2-7B and checked on Llama-2-70B (held out); A100 is fitted on Llama-3-8B
(its only model) and checked on tensor-parallel shards. No GPU needed; a few seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
from importlib import resources
from pathlib import Path

from interleaf.telemetry.gpu_cost import (
    LAYER_OPS,
    KernelCalibration,
    OperatorTimings,
    kernel_time,
    layer_time,
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


def errors(cal: KernelCalibration, data: OperatorTimings) -> dict[int, float]:
    """Token count -> predicted / measured − 1 of one layer."""
    return {n: layer_time(cal, data.shape, n) / data.layer_seconds(n) - 1 for n in data.seconds}


def summary(err: dict[int, float]) -> str:
    pow2 = [abs(e) for n, e in err.items() if n & (n - 1) == 0]
    every = [abs(e) for e in err.values()]
    within = sum(e <= 0.10 for e in every) / len(every)
    return (
        f"powers of two: max |err| {max(pow2):.1%}; all {len(every)} token counts: max {max(every):.1%}, "
        f"mean {sum(every) / len(every):.1%}, {within:.0%} within 10%"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"Vidur's CSVs (default {DEFAULT_DATA})")
    ap.add_argument("--all", action="store_true", help="print every token count")
    ap.add_argument("--write", action="store_true", help=f"rewrite telemetry/data/{CALIBRATION_FILE}")
    args = ap.parse_args()
    if not args.data.is_dir():
        ap.error(f"--data {args.data}: not a directory (it holds Vidur's *-mlp.csv files; see its README)")

    cals = fit_shipped_calibrations(args.data, fitted=datetime.date.today().isoformat())
    for name, cal in cals.items():
        how = f"fitted on {VIDUR_FITS[name]}" if name in VIDUR_FITS else cal.fitted
        print(
            f"{name:9s} F {cal.flops_per_s / 1e12:6.1f} TFLOP/s  B_w {cal.weight_bytes_per_s / 1e12:.3f} TB/s  "
            f"B_e {cal.elementwise_bytes_per_s / 1e12:.3f} TB/s  c_w {cal.gemm_overhead_s * 1e6:.2f} us  "
            f"c_e {cal.elementwise_overhead_s * 1e6:.2f} us  SMs {cal.sm_count}  ({how})"
        )

    for gpu, checks in CHECKS.items():
        cal = cals[gpu]
        loaded = [(load_vidur(args.data / f, tp), f, tp, role) for f, tp, role in checks]
        main_rows = [(d, f, role) for d, f, tp, role in loaded if tp == 1]
        print(f"\n## {gpu}: one layer's time, predicted vs measured (µs)\n")
        heads = [f"{f.split('-mlp')[0]} ({role}) meas / pred / err" for _, f, role in main_rows]
        print("| tokens | " + " | ".join(heads) + " |")
        print("|---:|" + "---:|" * len(main_rows))
        errs = [errors(cal, d) for d, _, _ in main_rows]
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
        print()
        for d, f, tp, role in loaded:
            print(f"- {f} TP {tp} ({role}): {summary(errors(cal, d))}")

        d = main_rows[0][0]
        print(f"\nPer operator, {main_rows[0][1]} (predicted / measured − 1):\n")
        counts = [n for n in (1, 16, 64, 256, 1024, 4096) if n in d.seconds]
        print("| operator | " + " | ".join(f"{n:,}" for n in counts) + " |")
        print("|---|" + "---:|" * len(counts))
        for op, _ in d.shape.kernels(1):
            cells = []
            for n in counts:
                spec = dict(d.shape.kernels(n))[op]
                cells.append(f"{kernel_time(cal, spec) / d.seconds[n][op] - 1:+.0%}")
            print(f"| {op} | " + " | ".join(cells) + " |")
    assert set(LAYER_OPS) == {op for op, _ in main_rows[0][0].shape.kernels(1)}

    if args.write:
        path = Path(str(resources.files("interleaf.telemetry").joinpath("data", CALIBRATION_FILE)))
        path.write_text(json.dumps({k: v.model_dump(exclude_none=True) for k, v in cals.items()}, indent=2) + "\n")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
