"""Runtime benchmark: what Ray + LangGraph + the client add to each LLM call, and how many episodes
per second the orchestration sustains at 1,000 concurrent episodes (sim executor).

    python bench/runtime.py                        # overhead, per-call and throughput, embedded sim engine
    python bench/runtime.py --only overhead --calls 200
    python bench/runtime.py --only per-call        # K = 1, 2, 4, 8 turns, 100 episodes each (~1 min)
    python bench/runtime.py --only throughput --episodes 2000 --concurrency 1000
    python bench/runtime.py --backend http://127.0.0.1:30000   # an engine you started

overhead: the same request (same prompt ids, same max_new_tokens, greedy) sent N times directly
with httpx (the body serialised with orjson, as the stack's client does), then N one-turn episodes
through the whole stack (JobRunner -> Ray actor -> the agent's graph -> BackendPool -> HTTP), one at
a time. Per call: p50/p95 latency of each and the difference (a one-turn episode's, so the Ray legs
and the episode's setup, paid once per episode, are all charged to its one call). The stack figure
is measured at the driver (episode dispatched -> result back), so it includes Ray dispatch, episode
setup, the graph, the client and the result transfer; it is also split by the actor's trajectory
timestamps (same machine, same clock) into driver -> Ray -> episode start, the episode less its LLM
call, and episode end -> Ray -> stored by the driver. The direct ids
are the job agent's first turn rendered as ``Episode`` renders it (worked examples included), and
``same prompt ids`` compares them with every episode's sent ids token for token. Retention ``none``
by default, so both paths make exactly one /generate per call. The stack runs twice, side by side
(``--transports channel,ray``): the runner reaching its actor over the episode channel (the default,
``runtime/jobs/episode_channel.py``) and over Ray actor calls (``JobRunner(episode_channel=False)``).

per-call (``--only per-call``): what the issue asks, overhead per LLM call. Episodes of K turns
(``--ks 1,2,4,8``, ``--per-k`` each, in ``--rounds`` rounds) through the whole stack, and after each
block the same K requests (the exact ids each turn sent, from the trajectories) sent directly, one
after another. Per K: p50 per episode of both and their difference, the engine's own time both ways
(``engine s/d``: equal, or the difference is not the orchestration's), the episode in the actor less
its calls, and the Ray legs. A least-squares line of (stack - direct) against K gives the per-episode
fixed cost (intercept: Ray both ways, episode setup and teardown) and the per-LLM-call marginal
overhead (slope). The one-turn episode's figure (the overhead section's) is intercept + one slope.

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
from options import BenchParser, comma_list, gpu_profile, int_at_least, one_of
from progress import Progress

TRANSPORTS = ("channel", "ray")
"""How the runner reaches its actors: the episode channel (the default) or Ray actor calls."""


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest-rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_agent(turns: int, args: argparse.Namespace):
    """The bench's agent: the default graph, unconstrained."""
    from interleaf.agents import Agent, Budgets

    return Agent(
        name="bench",
        grammar=None,  # the sim executor has no constrained decoding
        on_no_action="nudge",
        budgets=Budgets(max_turns=turns, max_new_tokens=args.max_new_tokens, max_tokens=8192, wall_time_s=None),
    )


def write_suite(path: Path, n: int, question: str) -> str:
    path.write_text("".join(json.dumps({"question": question, "answer": "0"}) + "\n" for _ in range(n)))
    return str(path)


class EpisodeClock:
    """Wall-clock (``time.time``) start and end of each episode from the runner's events, so that the
    actor's trajectory timestamps (same machine, same clock) can be set against them."""

    def __init__(self, progress: Progress) -> None:
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.progress = progress

    def on_event(self, e) -> None:
        if e.type == "episode_started":
            self.started[e.episode] = time.time()
        elif e.type == "episode_finished":
            self.finished[e.episode] = time.time()
            self.progress.advance()

    def wall(self, episode: int) -> float:
        return self.finished[episode] - self.started[episode]


async def direct_calls(url: str, ids: list[int], n: int, max_new_tokens: int) -> list[float]:
    import orjson

    payload = {"input_ids": ids, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0.0}}
    headers = {"content-type": "application/json"}
    out = []
    progress = Progress("overhead: direct calls", total=n, unit="calls")
    async with httpx.AsyncClient(timeout=120) as client:
        await client.post(f"{url}/generate", json=payload)  # warm the prefix cache, as the stack's first call does
        for _ in range(n):
            t0 = time.perf_counter()
            # Serialised per call with orjson, as the stack's client does (stdlib JSON: ~0.1 ms more).
            r = await client.post(f"{url}/generate", content=orjson.dumps(payload), headers=headers)
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
            progress.advance()
    return out


async def overhead(url: str, args: argparse.Namespace, workdir: Path) -> dict:
    from interleaf.agents import load_suite
    from interleaf.runtime.client import BackendPool
    from interleaf.runtime.jobs import JobSpec
    from interleaf.runtime.jobs.workers import build_job_agent

    agent = bench_agent(1, args)
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

    figures: dict = {
        "calls": args.calls,
        "prompt_tokens": len(ids),
        "max_new_tokens": args.max_new_tokens,
        "direct_p50_ms": 1e3 * pct(direct, 0.5),
        "direct_p95_ms": 1e3 * pct(direct, 0.95),
        "stacks": {},
    }
    for transport in args.transports:
        figures["stacks"][transport] = await one_turn_stack(spec, agent, ids, direct, transport, workdir)
    return figures


async def one_turn_stack(spec, agent, ids: list[int], direct: list[float], transport: str, workdir: Path) -> dict:
    """The overhead section's episodes through the whole stack, the runner reaching its actor over
    ``transport``: ``channel`` (the episode channel, the default) or ``ray`` (Ray actor calls)."""
    from interleaf.runtime.jobs import JobRunner

    spec = spec.model_copy(update={"job_id": None})
    clock = EpisodeClock(Progress(f"overhead: stack calls ({transport})", total=spec.n, unit="episodes"))
    runner = JobRunner(
        spec, agent=agent, runs_dir=workdir, on_event=clock.on_event, episode_channel=transport == "channel"
    )
    result = await runner.run()
    done = [t for t in result.trajectories[1:] if t.turns]  # episode 0 warms the actor (imports, pool connect)
    stack = [clock.wall(t.episode) for t in done]
    client = [t.turns[0].timings.e2e_s for t in done]
    # Where the stack's time goes: driver dispatch -> actor -> the episode starts; the episode
    # (graph, tools, turn records) without its LLM call; the episode's end -> driver stores it.
    to_actor = [t.started_at - clock.started[t.episode] for t in done]
    in_episode = [t.ended_at - t.started_at - t.turns[0].timings.e2e_s for t in done]
    back = [clock.finished[t.episode] - t.ended_at for t in done]
    same_prompt = bool(result.trajectories) and all(
        t.turns and t.turns[0].delta_ids == ids for t in result.trajectories
    )
    return {
        "calls": len(stack),
        "same_prompt_ids": same_prompt,
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


def turn_prompts(traj) -> list[list[int]]:
    """The exact ids each turn of ``traj`` sent (retention ``none``: no session, so every turn sends the
    whole conversation so far: earlier deltas and outputs, then its own delta)."""
    ids: list[int] = []
    prompts = []
    for turn in traj.turns:
        ids += turn.delta_ids
        prompts.append(list(ids))
        ids += turn.completion_ids
    return prompts


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of ys against xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


async def stack_block(url: str, k: int, n: int, args: argparse.Namespace, workdir: Path, tag: str) -> dict:
    """``n`` episodes of ``k`` turns through the whole stack, one at a time (plus one to warm the
    actor); per episode: the driver's time, its parts, the engine's own time and the ids each turn sent."""
    from interleaf.runtime.jobs import JobRunner, JobSpec

    suite = write_suite(workdir / f"per-call-{tag}.jsonl", n + 1, "Compute 12 * 34 + 5.")
    spec = JobSpec(suite=suite, n=n + 1, actors=1, concurrency=1, backend_urls=[url], retention="none")
    clock = EpisodeClock(Progress(f"per-call: stack, {k} turns", total=n + 1, unit="episodes"))
    runner = JobRunner(
        spec, agent=bench_agent(k, args), runs_dir=workdir, on_event=clock.on_event,
        episode_channel=args.per_call_transport == "channel",
    )  # fmt: skip
    result = await runner.run()
    done = [t for t in result.trajectories[1:] if len(t.turns) == k]  # episode 0 warms the actor
    stack = [clock.wall(t.episode) for t in done]
    calls = [sum(turn.timings.e2e_s for turn in t.turns) for t in done]
    prompts = [turn_prompts(t) for t in done]
    return {
        "of": n,
        "stack": stack,
        "calls_in_actor": calls,
        "episode_less_calls": [t.ended_at - t.started_at - c for t, c in zip(done, calls, strict=True)],
        "ray_legs": [s - (t.ended_at - t.started_at) for s, t in zip(stack, done, strict=True)],
        # The engine's own time for the calls (ttft + decode = its e2e): the same both ways, or the
        # difference is the engine's, not the orchestration's.
        "engine_stack": [sum(turn.timings.ttft_s + turn.timings.decode_s for turn in t.turns) for t in done],
        "prompts": prompts,
        "same_ids": all(
            len(ids) == turn.cache.prompt_tokens
            for t, ps in zip(done, prompts, strict=True)
            for ids, turn in zip(ps, t.turns, strict=True)
        ),
    }


async def direct_block(client: httpx.AsyncClient, url: str, prompts: list[list[list[int]]], max_new: int) -> dict:
    """Each episode's requests replayed directly, one after another: the same ids, bodies serialised
    with orjson as the stack's client does (stdlib JSON costs ~0.1 ms more for 2k ids)."""
    import orjson

    sampling = {"max_new_tokens": max_new, "temperature": 0.0}
    headers = {"content-type": "application/json"}
    direct, engine = [], []
    progress = Progress(f"per-call: direct, {len(prompts[0])} calls", total=len(prompts), unit="episodes")
    await client.post(f"{url}/generate", json={"input_ids": prompts[0][0], "sampling_params": sampling})  # warm
    for ps in prompts:
        replies = []
        t0 = time.perf_counter()
        for ids in ps:
            body = orjson.dumps({"input_ids": ids, "sampling_params": sampling})
            r = await client.post(f"{url}/generate", content=body, headers=headers)
            r.raise_for_status()
            replies.append(r)
        direct.append(time.perf_counter() - t0)
        engine.append(sum(orjson.loads(r.content)["meta_info"]["e2e_latency"] for r in replies))
        progress.advance()
    return {"direct": direct, "engine_direct": engine}


async def per_call(url: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Episodes of K turns through the stack, then the same K calls (same ids, one after another)
    sent directly; per K the p50 of each per episode and their difference. The difference against K
    splits into a per-episode fixed cost (intercept: Ray both ways, episode setup and teardown) and a
    per-LLM-call marginal overhead (slope: graph step, client, turn record). The Ks take turns in
    ``--rounds`` rounds, so that a change in the machine's load falls on all of them alike."""
    per_round = max(1, args.per_k // args.rounds)
    acc: dict[int, dict[str, list]] = {k: {} for k in args.ks}
    same: dict[int, bool] = dict.fromkeys(args.ks, True)
    async with httpx.AsyncClient(timeout=120) as client:
        for r in range(args.rounds):
            for k in args.ks:
                block = await stack_block(url, k, per_round, args, workdir, f"k{k}-r{r}")
                block |= await direct_block(client, url, block["prompts"], args.max_new_tokens)
                same[k] = same[k] and block.pop("same_ids")
                for key, values in block.items():
                    if isinstance(values, list) and key != "prompts":
                        acc[k].setdefault(key, []).extend(values)
    rows = []
    for k in args.ks:
        a = acc[k]
        rows.append(
            {
                "turns": k,
                "episodes": len(a["stack"]),
                "of": per_round * args.rounds,
                "same_ids": same[k],
                "stack_p50_ms": 1e3 * pct(a["stack"], 0.5),
                "stack_p95_ms": 1e3 * pct(a["stack"], 0.95),
                "direct_p50_ms": 1e3 * pct(a["direct"], 0.5),
                "direct_p95_ms": 1e3 * pct(a["direct"], 0.95),
                "overhead_p50_ms": 1e3 * (pct(a["stack"], 0.5) - pct(a["direct"], 0.5)),
                "calls_in_actor_p50_ms": 1e3 * pct(a["calls_in_actor"], 0.5),
                "engine_stack_p50_ms": 1e3 * pct(a["engine_stack"], 0.5),
                "engine_direct_p50_ms": 1e3 * pct(a["engine_direct"], 0.5),
                "episode_less_calls_p50_ms": 1e3 * pct(a["episode_less_calls"], 0.5),
                "ray_legs_p50_ms": 1e3 * pct(a["ray_legs"], 0.5),
            }
        )
    ks = [float(r["turns"]) for r in rows]
    fixed, per_call_ms = fit_line(ks, [r["overhead_p50_ms"] for r in rows])
    ep_fixed, ep_per_call = fit_line(ks, [r["episode_less_calls_p50_ms"] for r in rows])
    return {
        "rows": rows,
        "per_episode_fixed_ms": fixed,
        "per_call_marginal_ms": per_call_ms,
        "episode_less_calls_fixed_ms": ep_fixed,
        "episode_less_calls_per_call_ms": ep_per_call,
    }


def print_per_call(c: dict, label: str) -> None:
    engine = label.strip() or "real"
    print(f"\n== overhead per LLM call: episodes of K turns, stack vs the same K calls direct ({engine} engine, "
          "p50 per episode) ==")  # fmt: skip
    head = ["K", "episodes", "stack", "direct", "stack-direct", "fit", "calls in actor", "episode-calls",
            "legs", "engine s/d", "same ids"]  # fmt: skip
    print("".join(f"{h:>15}" for h in head))
    for r in c["rows"]:
        fit = c["per_episode_fixed_ms"] + r["turns"] * c["per_call_marginal_ms"]
        cells = [f"{r['turns']}", f"{r['episodes']}/{r['of']}", f"{r['stack_p50_ms']:.2f}", f"{r['direct_p50_ms']:.2f}",
                 f"{r['overhead_p50_ms']:.2f}", f"{fit:.2f}",
                 f"{r['calls_in_actor_p50_ms']:.2f}", f"{r['episode_less_calls_p50_ms']:.2f}",
                 f"{r['ray_legs_p50_ms']:.2f}", f"{r['engine_stack_p50_ms']:.2f}/{r['engine_direct_p50_ms']:.2f}",
                 f"{r['same_ids']}"]  # fmt: skip
        print("".join(f"{x:>15}" for x in cells))
    print("(ms; 'fit': the line below at K, far from stack-direct when a load spike hit one side; 'episode-calls': "
          "the episode in the actor less its LLM calls; 'legs': runner -> actor -> runner (episode channel or Ray); "
          "'engine s/d': the engine's own e2e for the episode's calls, stack / direct)")  # fmt: skip
    print(f"fit of stack-direct = fixed + K x marginal over K = {[r['turns'] for r in c['rows']]}: "
          f"per-episode fixed cost {c['per_episode_fixed_ms']:.2f} ms, "
          f"per-LLM-call marginal overhead {c['per_call_marginal_ms']:.2f} ms")  # fmt: skip
    print(f"  of which in the actor (episode less its calls): fixed {c['episode_less_calls_fixed_ms']:.2f} ms, "
          f"per call {c['episode_less_calls_per_call_ms']:.2f} ms")  # fmt: skip
    one = next((r for r in c["rows"] if r["turns"] == 1), None)
    if one is not None:
        print(f"one-turn episode (fixed + one call's marginal, as the overhead section measures): "
              f"{one['overhead_p50_ms']:.2f} ms")  # fmt: skip


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
    await worker.prepare("cpu", spec, bench_agent(1, args))
    warm = min(20, n)
    progress = Progress("cpu", total=warm + n, unit="episodes")
    for i in range(warm):  # warm: imports, the compiled graph
        await worker.run_episode("cpu", i)
        progress.advance(note="warm-up")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        await worker.run_episode("cpu", i)
        progress.advance()  # a print every 5 s at most: noise well under the per-episode figure
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await worker.aclose()
    await pool.aclose()
    return {"episodes": n, "cpu_ms_per_episode": 1e3 * cpu / n, "wall_ms_per_episode": 1e3 * wall / n}


async def throughput(url: str, args: argparse.Namespace, workdir: Path, transport: str = "channel") -> dict:
    """``--episodes`` episodes, ``--concurrency`` in flight, the runner reaching its actors over
    ``transport`` (``channel`` or ``ray``)."""
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
    agent = bench_agent(args.turns, args)
    progress = Progress(f"throughput ({transport})", total=args.episodes, unit="episodes", every_s=10.0)

    def on_event(e) -> None:
        if e.type == "episode_finished":
            progress.advance()

    t0 = time.perf_counter()
    runner = JobRunner(spec, agent=agent, runs_dir=workdir, on_event=on_event, episode_channel=transport == "channel")
    result = await runner.run()
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
        "transport": transport,
    }


def print_overhead(o: dict, label: str, model: str) -> None:
    print(f"\n== per-LLM-call overhead of one-turn episodes ({label}engine {model}, {o['calls']} calls, "
          f"{o['prompt_tokens']} prompt tokens, {o['max_new_tokens']} new) ==")  # fmt: skip
    print(f"{'path':<44}{'p50 ms':>10}{'p95 ms':>10}{'vs direct p50':>15}")
    floor = "direct httpx /generate (the floor)"
    print(f"{floor:<44}{o['direct_p50_ms']:>10.2f}{o['direct_p95_ms']:>10.2f}{'1.00x':>15}")
    for transport, st in o["stacks"].items():
        name = f"stack over {transport}: runner->actor->graph->HTTP"
        ratio = st["stack_p50_ms"] / o["direct_p50_ms"] if o["direct_p50_ms"] else float("nan")
        print(f"{name:<44}{st['stack_p50_ms']:>10.2f}{st['stack_p95_ms']:>10.2f}{ratio:>14.2f}x")
        print(f"{'  client call inside the actor':<44}{st['client_p50_ms']:>10.2f}{st['client_p95_ms']:>10.2f}")
        print(f"{'  overhead (stack - direct)':<44}{st['overhead_p50_ms']:>10.2f}{st['overhead_p95_ms']:>10.2f}")
        print(f"  by part (p50): driver -> episode start {st['to_actor_p50_ms']:.2f} ms; episode less its LLM call "
              f"{st['episode_less_call_p50_ms']:.2f} ms; episode end -> driver stored {st['back_p50_ms']:.2f} ms; "
              f"same prompt ids: {st['same_prompt_ids']}")  # fmt: skip
    if {"channel", "ray"} <= o["stacks"].keys():
        saved = o["stacks"]["ray"]["overhead_p50_ms"] - o["stacks"]["channel"]["overhead_p50_ms"]
        print(f"episode channel vs Ray actor calls: {saved:.2f} ms less overhead per one-turn episode at p50")


def main() -> None:
    from interleaf.runtime.client import RetentionPolicyName

    retentions = [r.value for r in RetentionPolicyName]
    count = int_at_least(1)
    p = BenchParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["overhead", "per-call", "throughput", "cpu"], default=None)
    p.add_argument("--backend", default=None, help="engine URL (default: start the embedded sim engine)")
    p.add_argument("--sim-clock", choices=["real", "virtual"], default="virtual")
    p.add_argument("--sim-gpu", type=gpu_profile, default=None)
    p.add_argument("--calls", type=count, default=50)
    p.add_argument("--max-new-tokens", type=count, default=16)
    p.add_argument("--retention", choices=retentions, default="none", help="retention for the overhead section")
    p.add_argument("--transports", type=comma_list(one_of(TRANSPORTS)), default=list(TRANSPORTS),
                   help="overhead and throughput: how the runner reaches its actors, side by side")  # fmt: skip
    p.add_argument("--per-call-transport", choices=TRANSPORTS, default="channel")
    p.add_argument("--ks", type=comma_list(count), default=[1, 2, 4, 8],
                   help="per-call section: turns per episode, comma-separated")  # fmt: skip
    p.add_argument("--per-k", type=count, default=100, help="per-call section: episodes per K")
    p.add_argument("--rounds", type=count, default=4, help="per-call section: rounds over the Ks")
    p.add_argument("--episodes", type=count, default=2000)
    p.add_argument("--concurrency", type=count, default=1000)
    p.add_argument("--actors", type=count, default=2)
    p.add_argument("--turns", type=count, default=2)
    p.add_argument("--throughput-retention", choices=retentions, default="session")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    args.transports = list(dict.fromkeys(args.transports))  # each once: a repeat would only run it again

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
                print_overhead(figures["overhead"], label, info["served_model_name"])
            if args.only in (None, "per-call"):
                figures["per_call"] = asyncio.run(per_call(url, args, Path(tmp)))
                print_per_call(figures["per_call"], label)
            if args.only in (None, "throughput"):
                figures["throughput"] = {
                    transport: asyncio.run(throughput(url, args, Path(tmp), transport)) for transport in args.transports
                }
                print(f"\n== throughput ({label}engine, clock {args.sim_clock}) ==")
                for transport, t in figures["throughput"].items():
                    print(f"over {transport}: {t['episodes']} episodes, {t['concurrency']} concurrent on {t['actors']} "
                          f"actors, {t['llm_calls']} LLM calls in {t['wall_s']:.1f} s: episodes/s "
                          f"{t['episodes_per_s']:.1f}, LLM calls/s {t['llm_calls_per_s']:.1f}, "
                          f"terminations {t['terminations']}")  # fmt: skip
                    for err in t["errors"]:
                        print(f"  error: {err}")
                if {"channel", "ray"} <= figures["throughput"].keys():
                    ch, ray_ = figures["throughput"]["channel"], figures["throughput"]["ray"]
                    print(f"episode channel / Ray actor calls: episodes/s "
                          f"{ch['episodes_per_s'] / ray_['episodes_per_s']:.2f}x")  # fmt: skip
        finally:
            ray.shutdown()
    figures["engine"] = {"model": info.get("served_model_name"), "simulated": bool(info.get("simulated"))}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
