"""Fidelity of the virtual-time simulation against the real-clock ``sim`` engine, on the same trace.

For each policy the same sessions (``reference`` workload by default) are replayed twice with the same
client code (``interleaf.runtime.simulate.simulation.replay``: a ``BackendPool`` of production episodes):

- **virtual**: ``simulate_policy`` — the engine's scheduler stepped in-process on a virtual clock;
- **real**: an engine process (``python -m interleaf.runtime.engine --executor sim``) that sleeps each
  step's predicted GPU time, spoken to over HTTP, with real tool sleeps — today's ``bench/retention.py --sim``.

Both use the same cost model, KV size, prefill chunk and token content (token block 1). Printed per
policy: makespan, mean JCT and recomputed tokens of both and their relative difference. The real-clock
run also pays the host's Python and HTTP time (on a loaded 2-core box that is what differs most);
``--time-scale`` stretches every tool pause to make that overhead relatively smaller. Every figure is
SIMULATED (the GPU times come from the cost model).

Run: ``python bench/simulate_fidelity.py [--agents 16 --turns 6 --policies none,session]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx
from progress import Progress

from interleaf.runtime.client import BackendPool
from interleaf.runtime.engine.process import EngineProcess
from interleaf.runtime.simulate import SimulationSetup, generate, sessions, simulate_policy
from interleaf.runtime.simulate.simulation import GREEDY, STRICT, replay, server_kv_tokens, split_policy
from interleaf.runtime.tokenizer import ByteTokenizer


async def _real(url: str, policy: str, scripts: list, setup: SimulationSetup) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        for _ in range(120):  # the previous policy's sessions may still be closing
            if (await client.post(f"{url}/flush_cache", timeout=30)).status_code == 200:
                break
            await asyncio.sleep(0.5)
    base, variant = split_policy(policy)
    pool = await BackendPool.connect(
        [url], retention=base, kv_budget_fraction=setup.kv_budget_fraction, tokenizer=ByteTokenizer(),
        admission=base != "none" and variant != GREEDY, admission_defer=variant != STRICT,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        totals = await replay(pool, scripts, seed=setup.seed)
    finally:
        await pool.aclose()
    return {
        "makespan_s": totals.end - t0,
        "jct_mean_s": statistics.fmean(totals.jct),
        "recomputed_tokens": totals.recomputed,
        "failed": totals.failed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="reference")
    p.add_argument("--agents", type=int, default=16)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--policies", default="none,session")
    p.add_argument("--gpu", default="H100")
    p.add_argument("--model", default="Llama-3.1-8B-Instruct")
    p.add_argument("--chunked-prefill-size", type=int, default=512)
    p.add_argument("--budget-ratio", type=float, default=0.5)
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply every tool pause")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args()

    scripts = sessions(generate(args.workload, args.agents, seed=args.seed, turns=args.turns))
    for s in scripts:
        for t in s.turns:
            if t.tool_pause_s is not None:
                t.tool_pause_s *= args.time_scale
    setup = SimulationSetup(servers=1, gpu=args.gpu, model=args.model, budget_ratio=args.budget_ratio,
                            token_block=1, chunked_prefill_size=args.chunked_prefill_size, seed=args.seed)  # fmt: skip
    kv = server_kv_tokens(scripts, setup)
    setup = setup.model_copy(update={"kv_tokens": kv})
    policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    floor = max(s.tool_time_s for s in scripts)
    print(f"SIMULATED fidelity: {len(scripts)} agents of {args.workload}, 1 x {args.gpu} ({args.model}), KV {kv:,} "
          f"tok, chunk {args.chunked_prefill_size}; tool-pause floor {floor:.1f} s")  # fmt: skip
    rows = []
    progress = Progress("fidelity", total=len(policies) * 2, unit="runs")
    with EngineProcess(
        "--executor", "sim", "--sim-gpu", args.gpu, "--sim-model", args.model, "--sim-clock", "real",
        "--max-total-tokens", str(kv), "--chunked-prefill-size", str(args.chunked_prefill_size),
    ) as engine:  # fmt: skip
        for policy in policies:
            virtual = simulate_policy(scripts, policy, setup)
            progress.advance(note=f"{policy} virtual")
            wall = time.monotonic()
            real = asyncio.run(_real(engine.url, policy, scripts, setup))
            progress.advance(note=f"{policy} real ({time.monotonic() - wall:.0f} s)")
            row = {
                "policy": policy,
                "virtual": {"makespan_s": virtual.makespan_s, "jct_mean_s": virtual.jct_mean_s,
                            "recomputed_tokens": virtual.recomputed_tokens, "failed": virtual.failed},
                "real": real,
            }  # fmt: skip
            rows.append(row)
    head = f"{'policy':16s} {'figure':18s} {'virtual':>10s} {'real clock':>10s} {'diff':>7s}"
    print(head + "\n" + "-" * len(head))
    for row in rows:
        for key in ("makespan_s", "jct_mean_s", "recomputed_tokens"):
            v, r = row["virtual"][key], row["real"][key]
            diff = (v - r) / r if r else 0.0
            print(f"{row['policy']:16s} {key:18s} {v:10.1f} {r:10.1f} {diff:+6.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"simulated": True, "agents": len(scripts), "kv_tokens": kv, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
