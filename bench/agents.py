"""Agent design, side by side: direct answering vs the tool agent with unconstrained arguments vs the
full agent, on ``arith``, ``lookup`` and ``mixed``, with the default model (SmolLM2-135M-Instruct).

Run: ``python bench/agents.py [--n 50] [--suites arith,lookup,mixed] [--arms direct,unconstrained,full]
[--concurrency 8] [--backend URL]``. Without ``--backend`` it starts the embedded engine.

Arms (one agent definition each, the same for every suite; the suite brings its tools, system text,
exemplars and each task's answer type):

* ``direct``  — no tools: the question and the answer (the exemplars without their tool calls),
  the answer constrained by the task's answer type;
* ``unconstrained`` — the ``tir`` agent, its tool arguments constrained to their types only
  (``GrammarOptions(constrain_arguments=False)``: no ``pattern``, lengths, ranges or grounded numbers);
* ``full`` — the ``tir`` agent as shipped: arguments constrained by their whole JSON schema and
  their numbers grounded in the conversation (``Agent.ground_numbers``), the answer by the task's
  answer type, worked examples as earlier turns, greedy decoding.

Prints one row per (suite, arm): accuracy, mean turns, mean prompt and completion tokens per
episode, mean PTE (``measured`` variant, H100-PCIe reference pricing of SmolLM2-135M), wall time.
Not a test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from interleaf.agents import Agent, Episode, GrammarOptions, get_agent, load_suite
from interleaf.agents.tasks import TaskSuite
from interleaf.runtime.client import BackendPool
from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.summary import summarize_job

ARMS = ("direct", "unconstrained", "full")


def arm_agent(arm: str, suite: TaskSuite, wall_time_s: float | None = None) -> Agent:
    """The agent of ``arm`` with the suite's tools (as a job builds it); ``wall_time_s`` replaces the
    episode's wall-time budget (None: unlimited, so a loaded machine changes times, not accuracy)."""
    base = get_agent("tir")
    base = dataclasses.replace(base, budgets=dataclasses.replace(base.budgets, wall_time_s=wall_time_s))
    if arm == "direct":
        return dataclasses.replace(base, name="direct", tools=[], min_tool_calls=0)
    tools = suite.make_tools()
    if arm == "unconstrained":
        grammar = dataclasses.replace(base.grammar or GrammarOptions(), constrain_arguments=False)
        return dataclasses.replace(base, name="tir-unconstrained", tools=tools, grammar=grammar)
    return dataclasses.replace(base, tools=tools)


async def run_arm(
    pool: BackendPool, suite: TaskSuite, arm: str, concurrency: int, wall_time_s: float | None = None
) -> list[Trajectory]:
    agent = arm_agent(arm, suite, wall_time_s)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Trajectory:
        async with gate, pool.episode(f"{suite.name}-{arm}-{i}", max_turns=agent.budgets.max_turns) as model:
            ep = Episode(agent, suite.tasks[i], model, episode=i, suite=suite.name,
                         system_extra=suite.system_prompt, exemplars=suite.exemplars)  # fmt: skip
            return await ep.run()

    return list(await asyncio.gather(*(one(i) for i in range(len(suite.tasks)))))


def row(suite: str, arm: str, trajs: list[Trajectory], wall_s: float) -> str:
    s = summarize_job(trajs, wall_s=wall_s)
    n = max(1, s.episodes)
    pte = s.pte_mean.get("measured")
    acc = f"{s.correct}/{s.scored} = {100 * (s.accuracy or 0):.0f}%"
    pte_text = f"{pte:,.0f}" if pte is not None else "n/a"
    return (f"| {suite} | {arm} | {acc} | {s.mean_turns:.2f} | {s.prompt_tokens / n:,.0f} | "
            f"{s.completion_tokens / n:,.0f} | {pte_text} | {wall_s:.0f} s |")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    engine = None
    url = args.backend
    if url is None:
        from interleaf.runtime.engine.process import EngineProcess

        engine = EngineProcess()
        url = engine.url
    try:
        pool = await BackendPool.connect(
            [url], retention="session", kv_budget_fraction=0.5, request_timeout_s=args.request_timeout
        )
        try:
            print("| suite | agent | accuracy | mean turns | prompt tok/ep | completion tok/ep | mean PTE | wall |")
            print("|---|---|---|---|---|---|---|---|")
            for name in args.suites.split(","):
                suite = load_suite(name, args.n, args.seed)
                for arm in args.arms.split(","):
                    start = time.monotonic()
                    trajs = await run_arm(pool, suite, arm, args.concurrency, args.wall_time)
                    print(row(name, arm, trajs, time.monotonic() - start), flush=True)
                    if args.show:
                        for t in trajs:
                            calls = [(c.name, c.arguments) for turn in t.turns for c in turn.tool_calls]
                            error = f" error={t.error}" if t.error else ""
                            print(f"    {t.task_id} {t.correct} ans={t.answer!r} exp={t.expected!r} "
                                  f"{t.termination.value} calls={calls}{error}")  # fmt: skip
        finally:
            await pool.aclose()
    finally:
        if engine is not None:
            engine.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50, help="tasks per suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suites", default="arith,lookup,mixed")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--backend", default=None, help="an SGLang-protocol server (default: start the embedded engine)")
    p.add_argument("--wall-time", type=float, default=None, help="per-episode wall-time budget, s (default: none)")
    p.add_argument("--request-timeout", type=float, default=3600.0,
                   help="per-request timeout, s (default 3600: load should slow requests, not fail them)")  # fmt: skip
    p.add_argument("--show", action="store_true", help="print every episode's answer and calls")
    args = p.parse_args(argv)
    unknown = set(args.arms.split(",")) - set(ARMS)
    if unknown:
        p.error(f"--arms: unknown {sorted(unknown)}; choose among {', '.join(ARMS)}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
