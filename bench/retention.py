"""Retention policies side by side: K synthetic tool-using agents against the embedded engine.

Default reference workload (keep it the default so figures stay comparable over time): 16 concurrent
agents × 6 turns; a 400-token system prompt shared by all; each turn decodes 32–96 tokens; tool
pauses log-normal with median 2 s and p95 10 s; tool outputs 50–800 tokens; KV budget (what the
pool may pin) = 50% of the agents' peak total context; seeded. The engine's KV capacity is set to
budget / ``--kv-budget-fraction`` (default 0.75: a quarter of the KV stays for running requests
and the radix cache), so the agents' total context does not fit and retention decides who keeps it.

Every policy runs the identical workload (same seed) against the same engine, one after the other,
with the cache flushed in between. Printed per policy: makespan, p50/p95 episode time, recomputed
prefill tokens (computed before, not found cached), prefill tokens computed, cache hit rate, peak
held tokens (client count and the engine's ``sglang:streaming_session_held_tokens``, sampled) vs
budget, decision counts — and ratios vs ``none``.

Run: ``python bench/retention.py`` (real SmolLM2 on CPU, several minutes per policy);
``python bench/retention.py --sim`` (the ``sim`` executor: H100 + Llama-3.1-8B-Instruct cost model,
256 agents; figures are simulated); ``--agents 4 --turns 3`` for a smoke run; ``--url`` to use a
running engine (its KV capacity is then whatever it was started with); ``--json out.json``.
Holding policies run with episode admission control; ``--policies session-greedy`` (any holding policy
+ ``-greedy``) runs one without it. ``--budget-ratio 1.05 --kv-budget-fraction 1.0`` gives every agent
room (unlimited KV): that ``session`` run's makespan is the ceiling for any policy's speedup. The header
also prints the makespan floor that the tool pauses alone impose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from options import BenchParser, gpu_profile, int_at_least, model_profile, number_above
from progress import Progress

from interleaf.runtime.client import BackendPool, ServerMetrics, parse_prometheus
from interleaf.runtime.engine.process import EngineProcess

POLICIES = ("none", "session", "ttl", "adaptive")
GREEDY = "-greedy"
"""Suffix for a policy run without episode admission control (every episode tries to hold)."""
TOOLS = ("search", "python", "browse")
_CANDIDATE_TEXT = (
    "the of and to in is was for on are with as at be by this had not but from or have an they "
    "which one you were all we when there can more if no out so said what up its about into than "
    "them only some could time these two may first then do any like my now over such our man me "
    "even most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under"
)


@dataclass
class AgentScript:
    """One synthetic agent: what it sends each turn, how long it decodes, how long its tools take."""

    first: str
    """Turn 0's delta: shared system prompt + this agent's task + the generation prompt."""
    deltas: list[str]
    """Turns 1..n-1: end of turn, tool message, generation prompt."""
    decode: list[int]
    """Tokens decoded per turn (ignore_eos, so exactly this many)."""
    pauses: list[float]
    """Tool time before turns 1..n-1, seconds."""
    tools: list[str]
    """Tool run in each pause."""
    context_tokens: int = 0
    """Final context length (the agent's peak)."""


@dataclass
class PolicyResult:
    policy: str
    makespan_s: float
    episode_p50_s: float
    episode_p95_s: float
    prompt_tokens: int
    cached_tokens: int
    recomputed_tokens: int
    prefill_tokens: int
    completion_tokens: int
    budget_tokens: int
    peak_held_tokens: int
    peak_engine_held_tokens: float
    decisions: dict[str, int] = field(default_factory=dict)
    failed_episodes: int = 0

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def one_token_units(tokenizer: Any) -> list[str]:
    """Strings that are one token each, so ``n`` of them concatenated make ~``n`` tokens."""

    def one(u: str) -> bool:
        return len(tokenizer.encode(u, add_special_tokens=False)) == 1

    words = [" " + w for w in _CANDIDATE_TEXT.split() if one(" " + w)]
    if len(words) >= 20:  # a subword tokenizer: " the", " of", ...
        return words
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if one(c)]
    if len(letters) == 26:  # a byte-level tokenizer (the sim executor's)
        return letters
    raise RuntimeError(f"no one-token units for {type(tokenizer).__name__}; extend _CANDIDATE_TEXT")


def build_workload(args: argparse.Namespace, tokenizer: Any) -> list[AgentScript]:
    """The seeded synthetic agents (identical for every policy)."""
    rng = random.Random(args.seed)
    units = one_token_units(tokenizer)

    def text(n: int) -> str:
        return "".join(rng.choice(units) for _ in range(n))

    system = text(args.system_tokens)
    # Log-normal with the requested median and p95: sigma = ln(p95 / median) / z_0.95.
    mu, sigma = math.log(args.tool_median_s), math.log(args.tool_p95_s / args.tool_median_s) / 1.6449
    scripts = []
    for i in range(args.agents):
        first = (
            f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nTask {i}: {text(40)}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        deltas, pauses, tools = [], [], []
        for _ in range(args.turns - 1):
            output = text(rng.randint(args.tool_output[0], args.tool_output[1]))
            deltas.append(f"<|im_end|>\n<|im_start|>tool\n{output}<|im_end|>\n<|im_start|>assistant\n")
            pauses.append(rng.lognormvariate(mu, sigma) * args.time_scale)
            tools.append(rng.choice(TOOLS))
        decode = [rng.randint(args.decode[0], args.decode[1]) for _ in range(args.turns)]
        script = AgentScript(first, deltas, decode, pauses, tools)
        script.context_tokens = sum(len(tokenizer.encode(d, add_special_tokens=False)) for d in [first, *deltas]) + sum(
            decode
        )
        scripts.append(script)
    return scripts


async def _engine_held(url: str, client: httpx.AsyncClient) -> float:
    try:
        response = await client.get(f"{url}/metrics", timeout=10)
        return ServerMetrics(parse_prometheus(response.text)).streaming_session_held_tokens or 0.0
    except httpx.HTTPError:
        return 0.0


async def _flush(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(120):
            if (await client.post(f"{url}/flush_cache", timeout=30)).status_code == 200:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url}/flush_cache kept refusing (sessions still open or requests running)")


async def run_policy(
    url: str,
    policy: str,
    scripts: list[AgentScript],
    fraction: float,
    tokenizer: Any,
    overcommit: float = 1.0,
    progress: Progress | None = None,
) -> PolicyResult:
    """Run every agent under ``policy``; ``progress`` (if given) advances once per finished turn."""
    await _flush(url)
    pool = await BackendPool.connect(
        [url],
        retention=policy.removesuffix(GREEDY),
        kv_budget_fraction=fraction,
        tokenizer=tokenizer,
        admission=not policy.endswith(GREEDY),
        admission_overcommit=overcommit,
    )
    totals = {"prompt": 0, "cached": 0, "recomputed": 0, "completion": 0}
    episode_s: list[float] = []
    failed = 0
    peak_engine = 0.0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak_engine
        async with httpx.AsyncClient() as client:
            while not done.is_set():
                peak_engine = max(peak_engine, await _engine_held(url, client))
                await asyncio.sleep(0.25)

    async def agent(i: int, script: AgentScript) -> None:
        nonlocal failed
        start = time.monotonic()
        try:
            async with pool.episode(f"{policy}-{i}", max_turns=len(script.decode)) as model:
                for turn in range(len(script.decode)):
                    if turn:
                        await model.pause([script.tools[turn - 1]])
                        await asyncio.sleep(script.pauses[turn - 1])
                    delta = script.first if turn == 0 else script.deltas[turn - 1]
                    out = await model.generate(delta, max_new_tokens=script.decode[turn], ignore_eos=True)
                    totals["prompt"] += out.cache.prompt_tokens
                    totals["cached"] += out.cache.cached_tokens
                    totals["recomputed"] += out.cache.recomputed_tokens
                    totals["completion"] += out.cache.completion_tokens
                    if progress is not None:
                        progress.advance(note=policy)
        except Exception as exc:  # a failed episode is a result, not a crash of the bench
            failed += 1
            print(f"  episode {policy}-{i} failed: {type(exc).__name__}: {exc}")
            if os.environ.get("INTERLEAF_BENCH_TRACEBACK"):
                traceback.print_exc()
        episode_s.append(time.monotonic() - start)

    sampler = asyncio.ensure_future(sample())
    t0 = time.monotonic()
    try:
        await asyncio.gather(*(agent(i, s) for i, s in enumerate(scripts)))
        makespan = time.monotonic() - t0
    finally:
        done.set()
        await sampler
        stats = pool.stats()
        await pool.aclose()
    server = stats["servers"][url]
    ordered = sorted(episode_s)
    return PolicyResult(
        policy=policy,
        makespan_s=makespan,
        episode_p50_s=statistics.median(ordered),
        episode_p95_s=ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        prompt_tokens=totals["prompt"],
        cached_tokens=totals["cached"],
        recomputed_tokens=totals["recomputed"],
        prefill_tokens=totals["prompt"] - totals["cached"],
        completion_tokens=totals["completion"],
        budget_tokens=server["budget_tokens"],
        peak_held_tokens=server["peak_held_tokens"],
        peak_engine_held_tokens=peak_engine,
        decisions=stats["decisions"],
        failed_episodes=failed,
    )


def render(results: list[PolicyResult], header: str) -> str:
    base = next((r for r in results if r.policy == "none"), results[0])
    lines = [header]
    cols = (
        f"{'policy':14s} {'makespan':>9s} {'speedup':>8s} {'ep p50':>7s} {'ep p95':>7s} {'recomputed':>11s} "
        f"{'vs none':>8s} {'prefilled':>10s} {'hit':>6s} {'peak held / budget':>22s} {'engine peak':>11s}  decisions"
    )
    lines += [cols, "-" * len(cols)]
    for r in results:
        speedup = base.makespan_s / r.makespan_s if r.makespan_s else float("nan")
        # Relative to none's recomputed tokens; none recomputing nothing leaves no ratio (the column before
        # holds the absolute figure).
        vs_none = "n/a"
        if base.recomputed_tokens:
            vs_none = f"{100 * (r.recomputed_tokens / base.recomputed_tokens - 1):+7.1f}%"
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(r.decisions.items()))
        lines.append(
            f"{r.policy:14s} {r.makespan_s:8.1f}s {speedup:7.2f}x {r.episode_p50_s:6.1f}s {r.episode_p95_s:6.1f}s "
            f"{r.recomputed_tokens:11,d} {vs_none:>8s} {r.prefill_tokens:10,d} {r.hit_rate:6.1%} "
            f"{r.peak_held_tokens:10,d} / {r.budget_tokens:<9,d} {r.peak_engine_held_tokens:11,.0f}  {decisions}"
            + (f"  FAILED {r.failed_episodes}" if r.failed_episodes else "")
        )
    return "\n".join(lines)


def _parse(argv: list[str] | None = None) -> tuple[BenchParser, argparse.Namespace]:
    """The parser (for checks that need the workload: ``check_sizing``) and the checked options."""
    p = BenchParser(description=__doc__.split("\n\n")[0])
    count, tokens, seconds = int_at_least(1), int_at_least(0), number_above(0)
    p.add_argument("--agents", type=count, default=None, help="concurrent agents (default 16; 256 with --sim)")
    p.add_argument("--turns", type=count, default=6)
    p.add_argument("--system-tokens", type=tokens, default=400)
    p.add_argument("--decode", type=count, nargs=2, default=(32, 96), metavar=("MIN", "MAX"))
    p.add_argument("--tool-median-s", type=seconds, default=2.0)
    p.add_argument("--tool-p95-s", type=seconds, default=10.0)
    p.add_argument("--tool-output", type=tokens, nargs=2, default=(50, 800), metavar=("MIN", "MAX"))
    p.add_argument("--time-scale", type=number_above(0, inclusive=True), default=1.0,
                   help="multiply every tool pause (smoke runs)")  # fmt: skip
    p.add_argument("--budget-ratio", type=number_above(0), default=0.5, help="KV budget / agents' peak total context")
    p.add_argument("--kv-budget-fraction", type=number_above(0), default=0.75, help="budget / engine KV capacity, <= 1")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument(
        "--admission-overcommit",
        type=number_above(0),
        default=1.0,
        help="admitted episodes' projected peaks may sum to this x the budget (admission control)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument("--sim", action="store_true", help="use the sim executor (simulated H100 timings)")
    p.add_argument("--sim-gpu", type=gpu_profile, default="H100")
    p.add_argument("--sim-model", type=model_profile, default="Llama-3.1-8B-Instruct")
    p.add_argument("--url", default=None, help="use this running engine instead of starting one")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.agents is None:
        args.agents = 256 if args.sim else 16
    if args.kv_budget_fraction > 1:
        p.fail("--kv-budget-fraction", args.kv_budget_fraction, "must be in (0, 1]")
    for option in ("decode", "tool_output"):
        low, high = getattr(args, option)
        if low > high:
            p.fail(f"--{option.replace('_', '-')}", f"{low} {high}", "MIN must be <= MAX")
    if args.tool_p95_s < args.tool_median_s:
        p.fail("--tool-p95-s", args.tool_p95_s, f"must be >= --tool-median-s ({args.tool_median_s})")
    for name in args.policies.split(","):
        if name.removesuffix(GREEDY) not in POLICIES or name == "none" + GREEDY:
            p.fail("--policies", repr(name), f"not one of {', '.join(POLICIES)} (append {GREEDY} to a holding "
                   "policy to run it without episode admission control)")  # fmt: skip
    return p, args


def check_sizing(p: BenchParser, args: argparse.Namespace, scripts: list[AgentScript], capacity: int) -> None:
    """Refuse a KV capacity that cannot hold the largest agent's context: every one of its requests would
    be refused, whatever the policy (``--agents 1 --turns 1`` sized it so: 0.5 / 0.75 of one context)."""
    largest = max(s.context_tokens for s in scripts)
    if capacity >= largest:
        return
    if args.url is not None:
        p.fail("--url", args.url, f"the engine's KV ({capacity:,} tok) cannot hold one agent's context "
               f"({largest:,} tok); start it with more --max-total-tokens")  # fmt: skip
    p.fail("--budget-ratio", args.budget_ratio,
           f"the engine's KV would be {capacity:,} tok (--budget-ratio x the agents' peak total context / "
           f"--kv-budget-fraction), less than one agent's context ({largest:,} tok), so every episode would "
           "fail; raise --agents or --budget-ratio, or lower --kv-budget-fraction")  # fmt: skip


async def main() -> None:
    p, args = _parse()
    if args.sim:
        from interleaf.runtime.tokenizer import ByteTokenizer

        tokenizer: Any = ByteTokenizer()
    else:
        from interleaf.runtime.engine.model_store import load_tokenizer

        tokenizer = load_tokenizer()
    scripts = build_workload(args, tokenizer)
    peak_context = sum(s.context_tokens for s in scripts)
    # No policy can finish before the agent with the longest tool time has waited for its tools.
    pause_floor = max(sum(s.pauses) for s in scripts)
    budget = int(args.budget_ratio * peak_context)
    capacity = math.ceil(budget / args.kv_budget_fraction)
    if args.url is None:
        check_sizing(p, args, scripts, capacity)
    engine: EngineProcess | None = None
    url = args.url
    if url is None:
        extra = ["--max-total-tokens", str(capacity), "--dtype", args.dtype]
        if args.sim:
            extra += ["--executor", "sim", "--sim-gpu", args.sim_gpu, "--sim-model", args.sim_model]
        engine = EngineProcess(*extra)
        url = engine.url
    try:
        async with httpx.AsyncClient() as client:
            info = (await client.get(f"{url}/server_info", timeout=30)).json()
        capacity = info["internal_states"][0]["max_total_num_tokens"]
        check_sizing(p, args, scripts, capacity)
        fraction = min(1.0, budget / capacity)
        what = (
            f"sim executor ({args.sim_gpu}, {args.sim_model}; SIMULATED timings)"
            if args.sim
            else (f"embedded engine, {info.get('served_model_name')} on CPU, {args.dtype}")
        )
        header = (
            f"{args.agents} agents x {args.turns} turns, system {args.system_tokens} tok shared, decode "
            f"{args.decode[0]}-{args.decode[1]}, tool pauses log-normal median {args.tool_median_s} s p95 "
            f"{args.tool_p95_s} s (x{args.time_scale}), tool outputs {args.tool_output[0]}-{args.tool_output[1]} "
            f"tok, seed {args.seed}\n{what}; agents' peak total context {peak_context:,} tok; KV budget "
            f"{budget:,} tok ({args.budget_ratio:.0%} of it) = {fraction:.2f} x engine KV {capacity:,} tok\n"
            f"makespan floor from tool pauses alone: {pause_floor:.1f} s (the longest agent's summed pauses); "
            "no policy's speedup over none can exceed none's makespan / this floor\n"
        )
        print(header, flush=True)
        results = []
        policies = args.policies.split(",")
        # Turns of every policy: the ETA covers the whole run (later policies are often faster than none).
        progress = Progress("retention", total=len(policies) * args.agents * args.turns, unit="turns", every_s=10.0)
        for policy in policies:
            result = await run_policy(url, policy, scripts, fraction, tokenizer, args.admission_overcommit, progress)
            results.append(result)
            print(render(results, f"after {policy}:"), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"header": header, "results": [asdict(r) for r in results]}, f, indent=2)
        print()
        print(render(results, header))
    finally:
        if engine is not None:
            engine.stop()
    lost = [r.policy for r in results if r.failed_episodes == len(scripts)]
    if lost:
        raise SystemExit(f"retention: every episode failed under {', '.join(lost)} (see the lines above)")


if __name__ == "__main__":
    asyncio.run(main())
