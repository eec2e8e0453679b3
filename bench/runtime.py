"""Runtime benchmark: what Ray + LangGraph + the client add to each LLM call, and how many episodes
per second the orchestration sustains at 1,000 concurrent episodes (sim executor).

    python bench/runtime.py                        # both sections, embedded sim engine (~2-4 min)
    python bench/runtime.py --only overhead --calls 100
    python bench/runtime.py --only throughput --episodes 2000 --concurrency 1000
    python bench/runtime.py --backend http://127.0.0.1:30000   # an engine you started

overhead: the same request (same prompt ids, same max_new_tokens, greedy) sent N times directly
with httpx, then N one-turn episodes through the whole stack (JobRunner -> Ray actor -> LangGraph
graph -> BackendPool -> HTTP), one at a time. Per call: p50/p95 latency of each and the
difference. The stack figure is measured at the driver (episode dispatched -> result back), so it
includes Ray dispatch, episode setup, the graph, the client and the result transfer; it is also
split by the actor's trajectory timestamps (same machine, same clock) into driver -> Ray -> episode
start, the episode less its LLM call, and episode end -> Ray -> stored by the driver. The direct ids
are the job agent's first turn rendered as ``Episode`` renders it (worked examples included), and
``same prompt ids`` compares them with every episode's sent ids token for token. Retention ``none``
by default, so both paths make exactly one /generate per call.

cpu (``--only cpu``, not in the default run): the CPU time (``time.process_time``) one
``EpisodeWorker`` spends per one-turn episode in this process, against an instant in-process server
(``httpx.MockTransport``): the orchestration's own cost with no Ray, no engine and no network, so it
hardly depends on the machine's load (wall-clock figures on a shared machine do). The figure includes
the mock server's JSON handling (~0.1 ms).

throughput: ``--episodes`` episodes with ``--concurrency`` in flight over ``--actors`` actors; each
episode runs ``--turns`` turns (the sim model writes no tool calls, so the agent nudges it on until
its turn budget). Reports episodes/s and LLM calls/s. The sim executor cannot do constrained
decoding, so both sections run the agent unconstrained; all figures are labelled simulated.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
from progress import Progress


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest-rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_agent(turns: int, max_new_tokens: int):
    from interleaf.agents import Agent, Budgets

    return Agent(
        name="bench",
        grammar=None,  # the sim executor has no constrained decoding
        on_no_action="nudge",
        budgets=Budgets(max_turns=turns, max_new_tokens=max_new_tokens, max_tokens=8192, wall_time_s=None),
    )


def write_suite(path: Path, n: int, question: str) -> str:
    path.write_text("".join(json.dumps({"question": question, "answer": "0"}) + "\n" for _ in range(n)))
    return str(path)


async def direct_calls(url: str, ids: list[int], n: int, max_new_tokens: int) -> list[float]:
    body = {"input_ids": ids, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0.0}}
    out = []
    progress = Progress("overhead: direct calls", total=n, unit="calls")
    async with httpx.AsyncClient(timeout=120) as client:
        await client.post(f"{url}/generate", json=body)  # warm the prefix cache, as the stack's first call does
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.post(f"{url}/generate", json=body)
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
            progress.advance()
    return out


async def overhead(url: str, args: argparse.Namespace, workdir: Path) -> dict:
    from interleaf.agents import load_suite
    from interleaf.runtime.client import BackendPool
    from interleaf.runtime.jobs import JobRunner, JobSpec
    from interleaf.runtime.jobs.workers import build_job_agent

    agent = bench_agent(1, args.max_new_tokens)
    question = "Compute 12 * 34 + 5."
    suite = write_suite(workdir / "overhead.jsonl", args.calls + 1, question)
    spec = JobSpec(suite=suite, n=args.calls + 1, actors=1, concurrency=1, backend_urls=[url], retention=args.retention)
    # The exact ids the stack sends: the job's agent (suite tools added) renders the first turn as
    # ``Episode`` does (system prompt, the suite's worked examples, the question), tokenised by the
    # pool's tokenizer. Every task asks the same question, so every episode sends these ids.
    tasks = load_suite(suite, spec.n)
    job_agent = build_job_agent(spec, agent, tasks)
    task = tasks.tasks[0]
    first = job_agent.render_initial(
        task.question, tasks.system_prompt, exemplars=tasks.exemplars, toolset=job_agent.tools_for(task.tools)
    )
    pool = await BackendPool.connect([url], retention="none")
    ids = pool.encode(first)
    await pool.aclose()
    direct = await direct_calls(url, ids, args.calls, args.max_new_tokens)

    started: dict[int, float] = {}
    finished: dict[int, float] = {}
    progress = Progress("overhead: stack calls", total=spec.n, unit="episodes")

    def on_event(e) -> None:
        # Wall clock (time.time), so that the actor's trajectory timestamps can be set against it
        # (same machine, same clock) to split the stack's time into its parts.
        if e.type == "episode_started":
            started[e.episode] = time.time()
        elif e.type == "episode_finished":
            finished[e.episode] = time.time()
            progress.advance()

    result = await JobRunner(spec, agent=agent, runs_dir=workdir, on_event=on_event).run()
    done = [t for t in result.trajectories[1:] if t.turns]  # episode 0 warms the actor (imports, pool connect)
    stack = [finished[t.episode] - started[t.episode] for t in done]
    client = [t.turns[0].timings.e2e_s for t in done]
    # Where the stack's time goes: driver dispatch -> Ray -> actor -> the episode starts; the episode
    # (graph, tools, turn records) without its LLM call; the episode's end -> Ray -> driver stores it.
    to_actor = [t.started_at - started[t.episode] for t in done]
    in_episode = [t.ended_at - t.started_at - t.turns[0].timings.e2e_s for t in done]
    back = [finished[t.episode] - t.ended_at for t in done]
    same_prompt = bool(result.trajectories) and all(
        t.turns and t.turns[0].delta_ids == ids for t in result.trajectories
    )
    return {
        "calls": len(stack),
        "prompt_tokens": len(ids),
        "max_new_tokens": args.max_new_tokens,
        "same_prompt_ids": same_prompt,
        "direct_p50_ms": 1e3 * pct(direct, 0.5),
        "direct_p95_ms": 1e3 * pct(direct, 0.95),
        "client_p50_ms": 1e3 * pct(client, 0.5),
        "client_p95_ms": 1e3 * pct(client, 0.95),
        "stack_p50_ms": 1e3 * pct(stack, 0.5),
        "stack_p95_ms": 1e3 * pct(stack, 0.95),
        "overhead_p50_ms": 1e3 * (pct(stack, 0.5) - pct(direct, 0.5)),
        "overhead_p95_ms": 1e3 * (pct(stack, 0.95) - pct(direct, 0.95)),
        "to_actor_p50_ms": 1e3 * pct(to_actor, 0.5),
        "episode_less_call_p50_ms": 1e3 * pct(in_episode, 0.5),
        "back_p50_ms": 1e3 * pct(back, 0.5),
    }


def instant_server(output_ids: list[int]) -> httpx.MockTransport:
    """An in-process SGLang-protocol server that answers every /generate at once with ``output_ids``."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/server_info":
            return httpx.Response(200, json={"internal_states": [{"max_total_num_tokens": 10**7}]})
        if path == "/model_info":
            name = "sim:Llama-3.1-8B-Instruct@H100-PCIe"  # a model with a shipped profile: spans compute PTE
            return httpx.Response(200, json={"model_path": "sim://Llama-3.1-8B-Instruct", "served_model_name": name})
        if path == "/generate":
            body = json.loads(request.content)
            n = len(body["input_ids"])
            meta = {"id": body.get("rid", "r"), "finish_reason": {"type": "length"}, "prompt_tokens": n,
                    "completion_tokens": len(output_ids), "cached_tokens": 0, "e2e_latency": 0.0}  # fmt: skip
            return httpx.Response(
                200, json={"text": "x" * len(output_ids), "output_ids": output_ids, "meta_info": meta}
            )
        return httpx.Response(200, json={})

    return httpx.MockTransport(handler)


async def orchestration_cpu(args: argparse.Namespace, workdir: Path) -> dict:
    from contextlib import asynccontextmanager

    from interleaf.runtime.client import BackendPool
    from interleaf.runtime.jobs import JobSpec
    from interleaf.runtime.jobs.workers import EpisodeWorker

    n = max(args.calls, 50)
    url = "http://instant.invalid"
    suite = write_suite(workdir / "cpu.jsonl", n, "Compute 12 * 34 + 5.")
    spec = JobSpec(suite=suite, n=n, actors=1, concurrency=1, backend_urls=[url], retention="none")
    pool = await BackendPool.connect([url], retention="none", transport=instant_server([120] * args.max_new_tokens))

    @asynccontextmanager
    async def model(episode_id: str):
        async with pool.episode(episode_id, max_turns=1) as m:
            yield m

    worker = EpisodeWorker([url], model_factory=model, name="cpu")
    await worker.prepare("cpu", spec, bench_agent(1, args.max_new_tokens))
    for i in range(min(20, n)):  # warm: imports, the compiled graph
        await worker.run_episode("cpu", i)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        await worker.run_episode("cpu", i)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await worker.aclose()
    await pool.aclose()
    return {"episodes": n, "cpu_ms_per_episode": 1e3 * cpu / n, "wall_ms_per_episode": 1e3 * wall / n}


async def throughput(url: str, args: argparse.Namespace, workdir: Path) -> dict:
    from interleaf.runtime.jobs import JobRunner, JobSpec

    suite = write_suite(workdir / "throughput.jsonl", args.episodes, "Compute 12 * 34 + 5.")
    spec = JobSpec(
        suite=suite,
        n=args.episodes,
        actors=args.actors,
        concurrency=args.concurrency,
        backend_urls=[url],
        retention=args.throughput_retention,
    )
    agent = bench_agent(args.turns, args.max_new_tokens)
    progress = Progress("throughput", total=args.episodes, unit="episodes", every_s=10.0)

    def on_event(e) -> None:
        if e.type == "episode_finished":
            progress.advance()

    t0 = time.perf_counter()
    result = await JobRunner(spec, agent=agent, runs_dir=workdir, on_event=on_event).run()
    wall = time.perf_counter() - t0
    calls = sum(len(t.turns) for t in result.trajectories)
    return {
        "episodes": len(result.trajectories),
        "concurrency": args.concurrency,
        "actors": args.actors,
        "llm_calls": calls,
        "wall_s": wall,
        "episodes_per_s": len(result.trajectories) / wall,
        "llm_calls_per_s": calls / wall,
        "terminations": result.summary.terminations,
        "errors": sorted({(t.error or "")[:300] for t in result.trajectories if t.error})[:5],
        "retention": args.throughput_retention,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["overhead", "throughput", "cpu"], default=None)
    p.add_argument("--backend", default=None, help="engine URL (default: start the embedded sim engine)")
    p.add_argument("--sim-clock", choices=["real", "virtual"], default="virtual")
    p.add_argument("--sim-gpu", default=None)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--retention", default="none", help="retention for the overhead section")
    p.add_argument("--episodes", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--throughput-retention", default="session")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    if args.only == "cpu":
        with tempfile.TemporaryDirectory(prefix="interleaf-bench-") as tmp:
            c = asyncio.run(orchestration_cpu(args, Path(tmp)))
        print(f"\n== orchestration CPU per one-turn episode (in process, instant server, {c['episodes']} episodes) ==")
        print(f"cpu {c['cpu_ms_per_episode']:.3f} ms   wall {c['wall_ms_per_episode']:.3f} ms")
        if args.json:
            args.json.write_text(json.dumps({"cpu": c}, indent=2))
        return

    import ray

    from interleaf.runtime.jobs import ensure_ray
    from interleaf.runtime.jobs.embedded import EmbeddedServices

    engine_args = ["--executor", "sim", "--sim-clock", args.sim_clock]
    if args.sim_gpu:
        engine_args += ["--sim-gpu", args.sim_gpu]
    figures: dict[str, dict] = {}
    with (
        EmbeddedServices([args.backend] if args.backend else [], engine_args=engine_args, start_redis=False) as svc,
        tempfile.TemporaryDirectory(prefix="interleaf-bench-") as tmp,
    ):
        url = svc.backend_urls[0]
        info = httpx.get(f"{url}/model_info").json()
        label = "SIMULATED " if info.get("simulated") else ""
        ensure_ray(None)
        try:
            if args.only in (None, "overhead"):
                figures["overhead"] = asyncio.run(overhead(url, args, Path(tmp)))
                o = figures["overhead"]
                print(f"\n== per-LLM-call overhead ({label}engine {info['served_model_name']}, {o['calls']} calls, "
                      f"{o['prompt_tokens']} prompt tokens, {o['max_new_tokens']} new) ==")  # fmt: skip
                print(f"{'path':<34}{'p50 ms':>10}{'p95 ms':>10}")
                for name, key in [("direct httpx /generate", "direct"), ("client call inside the actor", "client"),
                                  ("stack: JobRunner->Ray->graph->HTTP", "stack")]:  # fmt: skip
                    print(f"{name:<34}{o[key + '_p50_ms']:>10.1f}{o[key + '_p95_ms']:>10.1f}")
                print(f"{'overhead (stack - direct)':<34}{o['overhead_p50_ms']:>10.1f}{o['overhead_p95_ms']:>10.1f}")
                ratio = o["stack_p50_ms"] / o["direct_p50_ms"] if o["direct_p50_ms"] else float("nan")
                print(f"stack / direct at p50: {ratio:.2f}x   same prompt ids: {o['same_prompt_ids']}")
                print(f"stack at p50, by part: driver -> Ray -> episode start {o['to_actor_p50_ms']:.2f} ms; "
                      f"episode less its LLM call {o['episode_less_call_p50_ms']:.2f} ms; "
                      f"episode end -> Ray -> driver stored {o['back_p50_ms']:.2f} ms")  # fmt: skip
            if args.only in (None, "throughput"):
                figures["throughput"] = asyncio.run(throughput(url, args, Path(tmp)))
                t = figures["throughput"]
                print(f"\n== throughput ({label}engine, clock {args.sim_clock}) ==")
                print(f"{t['episodes']} episodes, {t['concurrency']} concurrent on {t['actors']} actors, "
                      f"{t['llm_calls']} LLM calls in {t['wall_s']:.1f} s")  # fmt: skip
                print(f"episodes/s {t['episodes_per_s']:.1f}   LLM calls/s {t['llm_calls_per_s']:.1f}   "
                      f"terminations {t['terminations']}")  # fmt: skip
                for err in t["errors"]:
                    print(f"  error: {err}")
        finally:
            ray.shutdown()
    figures["engine"] = {"model": info.get("served_model_name"), "simulated": bool(info.get("simulated"))}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
