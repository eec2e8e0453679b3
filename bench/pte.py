"""PTE throughput: one million turns, every variant, vectorised (target: well under 2 s in all).

Run: ``python bench/pte.py [n_turns]`` (default 1,000,000). Prints seconds per variant and the total.
"""

from __future__ import annotations

import time

from options import BenchParser, int_at_least
from progress import Progress

from interleaf.telemetry import HARDWARE_PROFILES, MODEL_PROFILES, PTEVariant, TurnArrays, pte, pte_table


def main(n: int = 1_000_000) -> None:
    turns = TurnArrays.random(n)
    model, hw = MODEL_PROFILES["Qwen3-32B"], HARDWARE_PROFILES["H100-PCIe"]
    total = 0.0
    progress = Progress("pte", total=len(PTEVariant) + 1, unit="runs", every_s=1.0)
    for v in PTEVariant:
        t0 = time.perf_counter()
        values = pte(turns, model, hw, v)
        dt = time.perf_counter() - t0
        total += dt
        print(f"{v.value:14s} {dt * 1e3:8.1f} ms  ({len(values):,} trajectories, mean {values.mean():,.0f} PTE)")
        progress.advance()
    t0 = time.perf_counter()
    pte_table(turns, model, hw)
    print(f"{'all (pte_table)':14s} {(time.perf_counter() - t0) * 1e3:8.1f} ms for {n:,} turns")
    progress.advance()
    print(f"sum of single-variant runs: {total:.3f} s")


if __name__ == "__main__":
    p = BenchParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n_turns", nargs="?", type=int_at_least(1), default=1_000_000, help="turns (default 1,000,000)")
    main(p.parse_args().n_turns)
