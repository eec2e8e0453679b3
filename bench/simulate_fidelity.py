"""Fidelity of the virtual-time simulation against the real-clock ``sim`` engine, on the same trace.

For each policy the same sessions (``reference`` workload by default) are replayed twice with the same
client code (``interleaf.runtime.simulate.simulation.replay``: a ``BackendPool`` of production episodes):

- **virtual**: ``simulate_policy`` — the engine's scheduler stepped in-process on a virtual clock;
- **real**: an engine process (``python -m interleaf.runtime.engine --executor sim``) that sleeps each
  step's predicted GPU time, spoken to over HTTP, with real tool sleeps — today's ``bench/retention.py --sim``.

Both use the same cost model, KV size, prefill chunk and token content (token block 1). The real-clock
run also pays the host's time (on a loaded 2-core box that is what differs most), which the virtual clock
leaves out by design. So the host overhead is measured on this box and modelled in a third run,
**virtual+host** (``SimulationSetup.host_request_s`` / ``host_step_s``):

- per request: the client's e2e time minus the engine's own (HTTP round trip, JSON, the client's Python),
  averaged over every turn of the real-clock runs;
- per scheduler step: the real seconds ``Scheduler.step()`` took in the virtual runs (the engine's Python
  between GPU steps; the real engine sleeps the predicted GPU time *after* it), plus how much longer than
  asked a ``time.sleep`` of the mean step time lasts in a thread on this box (the real engine's scheduler
  thread sleeps each forward's time; on a loaded box it wakes late). One sleep per step is assumed (most
  steps are a decode alone; a step that also prefills sleeps twice).

Both are measurements, averaged over all policies' runs, not fitted to the makespans; ``--host-request-s``
/ ``--host-step-s`` override them. Printed per policy: makespan, mean JCT and recomputed tokens of the
three runs and each virtual one's difference from the real clock. ``--time-scale`` stretches every tool
pause. Every figure is SIMULATED (the GPU times come from the cost model).

Run: ``python bench/simulate_fidelity.py [--agents 16 --turns 6 --policies none,session]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

import httpx
from options import BenchParser, comma_list, gpu_profile, int_at_least, model_profile, number_above
from progress import Progress
from pydantic import ValidationError

from interleaf.runtime.client import BackendPool
from interleaf.runtime.engine.process import EngineProcess
from interleaf.runtime.simulate import (
    EXTRA_POLICIES,
    PolicyResult,
    SimulationSetup,
    check_policy,
    generate,
    sessions,
    simulate_policy,
)
from interleaf.runtime.simulate.simulation import admission_mode, replay, server_kv_tokens, split_policy
from interleaf.runtime.simulate.workloads import SHAPES
from interleaf.runtime.tokenizer import ByteTokenizer


async def _real(url: str, policy: str, scripts: list, setup: SimulationSetup) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        for _ in range(120):  # the previous policy's sessions may still be closing
            if (await client.post(f"{url}/flush_cache", timeout=30)).status_code == 200:
                break
            await asyncio.sleep(0.5)
    pool = await BackendPool.connect(
        [url], retention=split_policy(policy)[0], kv_budget_fraction=setup.kv_budget_fraction,
        tokenizer=ByteTokenizer(), **admission_mode(policy).pool_options(),
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
        "turns": totals.turns,
        "host_gap_s": totals.host_gap_s,
    }


def _sleep_overshoot(seconds: float, samples: int = 200) -> float:
    """Mean seconds a ``time.sleep(seconds)`` in a thread overruns, as the engine's scheduler thread sleeps."""
    late: list[float] = []

    def run() -> None:
        for _ in range(samples):
            t = time.perf_counter()
            time.sleep(seconds)
            late.append(time.perf_counter() - t - seconds)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return statistics.fmean(late)


def _figures(r: PolicyResult) -> dict[str, float]:
    return {"makespan_s": r.makespan_s, "jct_mean_s": r.jct_mean_s, "recomputed_tokens": r.recomputed_tokens,
            "failed": r.failed}  # fmt: skip


def real_clock_policy(text: str) -> str:
    """A policy both the simulation and the real-clock engine run (``oracle`` and ``unbounded`` are the
    simulation's alone)."""
    try:
        name = check_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name in EXTRA_POLICIES:
        raise argparse.ArgumentTypeError(f"{text!r} exists only in the simulation; the real-clock engine cannot run it")
    return name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked, with ``args.setup`` (the ``SimulationSetup`` they make) built here so that a
    model too big for the GPU is refused before the engine starts."""
    p = BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="reference", choices=sorted(SHAPES))
    p.add_argument("--agents", type=int_at_least(1), default=16)
    p.add_argument("--turns", type=int_at_least(1), default=6)
    p.add_argument("--policies", type=comma_list(real_clock_policy), default=["none", "session"])
    p.add_argument("--gpu", type=gpu_profile, default="H100")
    p.add_argument("--model", type=model_profile, default="Llama-3.1-8B-Instruct")
    p.add_argument("--chunked-prefill-size", type=int_at_least(1), default=512)
    p.add_argument("--budget-ratio", type=number_above(0), default=0.5)
    p.add_argument("--time-scale", type=number_above(0, inclusive=True), default=1.0, help="multiply every tool pause")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--host-request-s", type=number_above(0, inclusive=True), default=None,
                   help="host s per request (default: measured)")  # fmt: skip
    p.add_argument("--host-step-s", type=number_above(0, inclusive=True), default=None,
                   help="host s per scheduler step (default: measured)")  # fmt: skip
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    try:
        args.setup = SimulationSetup(servers=1, gpu=args.gpu, model=args.model, budget_ratio=args.budget_ratio,
                                     token_block=1, chunked_prefill_size=args.chunked_prefill_size,
                                     seed=args.seed)  # fmt: skip
    except ValidationError as exc:  # each field is checked above; what is left is the pair (weights vs memory)
        p.fail("--gpu/--model", f"{args.gpu}/{args.model}", "; ".join(str(e.get("ctx", {}).get("error", e["msg"]))
                                                                     for e in exc.errors()))  # fmt: skip
    return args


def main() -> None:
    args = parse_args()
    scripts = sessions(generate(args.workload, args.agents, seed=args.seed, turns=args.turns))
    for s in scripts:
        for t in s.turns:
            if t.tool_pause_s is not None:
                t.tool_pause_s *= args.time_scale
    setup = args.setup
    kv = server_kv_tokens(scripts, setup)
    setup = setup.model_copy(update={"kv_tokens": kv})
    policies = args.policies
    floor = max(s.tool_time_s for s in scripts)
    print(f"SIMULATED fidelity: {len(scripts)} agents of {args.workload}, 1 x {args.gpu} ({args.model}), KV {kv:,} "
          f"tok, chunk {args.chunked_prefill_size}; tool-pause floor {floor:.1f} s")  # fmt: skip
    rows = []
    progress = Progress("fidelity", total=len(policies) * 3, unit="runs")
    virtual_runs: list[PolicyResult] = []
    with EngineProcess(
        "--executor", "sim", "--sim-gpu", args.gpu, "--sim-model", args.model, "--sim-clock", "real",
        "--max-total-tokens", str(kv), "--chunked-prefill-size", str(args.chunked_prefill_size),
    ) as engine:  # fmt: skip
        for policy in policies:
            virtual = simulate_policy(scripts, policy, setup)
            virtual_runs.append(virtual)
            progress.advance(note=f"{policy} virtual")
            wall = time.monotonic()
            real = asyncio.run(_real(engine.url, policy, scripts, setup))
            progress.advance(note=f"{policy} real ({time.monotonic() - wall:.0f} s)")
            rows.append({"policy": policy, "virtual": _figures(virtual), "real": real})
    # The host's overhead, measured: per request from the real-clock runs, per step from the virtual ones.
    turns = sum(r["real"]["turns"] for r in rows)
    measured_request = sum(r["real"]["host_gap_s"] for r in rows) / max(1, turns)
    steps = sum(v.steps for v in virtual_runs)
    step_python = sum(v.step_python_s for v in virtual_runs) / max(1, steps)
    mean_step = sum(v.gpu_busy * v.makespan_s for v in virtual_runs) / max(1, steps)
    overshoot = _sleep_overshoot(mean_step)
    measured_step = step_python + overshoot
    host = setup.model_copy(update={
        "host_request_s": measured_request if args.host_request_s is None else args.host_request_s,
        "host_step_s": measured_step if args.host_step_s is None else args.host_step_s,
    })  # fmt: skip
    print(f"host overhead measured on this box: {measured_request * 1e3:.2f} ms per request (client e2e - engine "
          f"e2e, {turns} turns); {measured_step * 1e3:.2f} ms per scheduler step = {step_python * 1e3:.2f} ms of "
          f"Scheduler.step() ({steps} steps) + {overshoot * 1e3:.2f} ms late wake-up from a {mean_step * 1e3:.2f} ms "
          f"sleep; modelled: {host.host_request_s * 1e3:.2f} / {host.host_step_s * 1e3:.2f} ms")  # fmt: skip
    for row in rows:
        row["virtual+host"] = _figures(simulate_policy(scripts, row["policy"], host))
        progress.advance(note=f"{row['policy']} virtual+host")
    head = (f"{'policy':16s} {'figure':18s} {'virtual':>10s} {'diff':>7s} {'virt+host':>10s} {'diff':>7s} "
            f"{'real clock':>10s}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for row in rows:
        for key in ("makespan_s", "jct_mean_s", "recomputed_tokens"):
            v, h, r = row["virtual"][key], row["virtual+host"][key], row["real"][key]
            dv, dh = ((v - r) / r if r else 0.0), ((h - r) / r if r else 0.0)
            print(f"{row['policy']:16s} {key:18s} {v:10.1f} {dv:+6.1%} {h:10.1f} {dh:+6.1%} {r:10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"simulated": True, "agents": len(scripts), "kv_tokens": kv,
                       "host_request_s": host.host_request_s, "host_step_s": host.host_step_s,
                       "measured_request_s": measured_request, "measured_step_s": measured_step,
                       "step_python_s": step_python, "sleep_overshoot_s": overshoot, "rows": rows},
                      f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
