"""PTE throughput: one million turns, every variant, vectorised (target: well under 2 s in all).

Run: ``python bench/pte.py [n_turns]``. Prints seconds per variant and the total.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from interleaf.telemetry import HARDWARE_PROFILES, MODEL_PROFILES, PTEVariant, TurnArrays, pte, pte_table


def main(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 30_000, n)
    turns = TurnArrays(
        prompt_tokens=prompt,
        completion_tokens=rng.integers(1, 2_000, n),
        cached_tokens=(prompt * rng.random(n)).astype(np.int64),
        new_tokens=rng.integers(1, 100, n),
        batch_size=rng.integers(1, 64, n).astype(np.float64),
        trajectory=np.repeat(np.arange(n // 10), 10)[:n],
    )
    model, hw = MODEL_PROFILES["Qwen3-32B"], HARDWARE_PROFILES["H100-PCIe"]
    total = 0.0
    for v in PTEVariant:
        t0 = time.perf_counter()
        values = pte(turns, model, hw, v)
        dt = time.perf_counter() - t0
        total += dt
        print(f"{v.value:14s} {dt * 1e3:8.1f} ms  ({len(values):,} trajectories, mean {values.mean():,.0f} PTE)")
    t0 = time.perf_counter()
    pte_table(turns, model, hw)
    print(f"{'all (pte_table)':14s} {(time.perf_counter() - t0) * 1e3:8.1f} ms for {n:,} turns")
    print(f"sum of single-variant runs: {total:.3f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
