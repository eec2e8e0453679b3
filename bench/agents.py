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
episode, mean PTE (``measured`` variant, H100-PCIe reference pricing of SmolLM2-135M), wall time, and
the accuracy and mean PTE as ratios to the ``direct`` arm's (``direct`` runs first in each suite; "n/a"
without it). With two arms or more, a last row per suite, ``any arm (oracle)``, counts the tasks that
at least one arm answered right: the accuracy an oracle choosing the arm per task would reach.
Progress and an ETA over every episode go to stderr (bench/progress.py).
Not a test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from options import BenchParser, comma_list, int_at_least, number_above, one_of
from progress import Progress

from interleaf.agents import Agent, Episode, GrammarOptions, get_agent, load_suite
from interleaf.agents.tasks import TaskSuite
from interleaf.runtime.client import BackendPool
from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.summary import JobSummary, summarize_job

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
    pool: BackendPool,
    suite: TaskSuite,
    arm: str,
    concurrency: int,
    wall_time_s: float | None = None,
    progress: Progress | None = None,
) -> list[Trajectory]:
    """Every task of ``suite`` under ``arm``, ``concurrency`` (>= 1) at a time; ``progress`` (if given)
    advances once per finished episode."""
    agent = arm_agent(arm, suite, wall_time_s)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Trajectory:
        async with gate, pool.episode(f"{suite.name}-{arm}-{i}", max_turns=agent.budgets.max_turns) as model:
            ep = Episode(agent, suite.tasks[i], model, episode=i, suite=suite.name,
                         system_extra=suite.system_prompt, exemplars=suite.exemplars)  # fmt: skip
            traj = await ep.run()
        if progress is not None:
            progress.advance(note=f"{suite.name} {arm}")
        return traj

    return list(await asyncio.gather(*(one(i) for i in range(len(suite.tasks)))))


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "n/a"


def row(suite: str, arm: str, s: JobSummary, wall_s: float, direct: JobSummary | None = None) -> str:
    """One table row; ``direct`` (the suite's ``direct`` arm, if run) gives the ratio columns."""
    n = max(1, s.episodes)
    pte = s.pte_mean.get("measured")
    acc = f"{s.correct}/{s.scored} = {100 * (s.accuracy or 0):.0f}%"
    pte_text = f"{pte:,.0f}" if pte is not None else "n/a"
    acc_ratio = _ratio(s.accuracy, direct.accuracy) if direct else "n/a"
    pte_ratio = _ratio(pte, direct.pte_mean.get("measured")) if direct else "n/a"
    return (f"| {suite} | {arm} | {acc} | {s.mean_turns:.2f} | {s.prompt_tokens / n:,.0f} | "
            f"{s.completion_tokens / n:,.0f} | {pte_text} | {wall_s:.0f} s | {acc_ratio} | {pte_ratio} |")  # fmt: skip


def oracle_row(suite: str, runs: list[list[Trajectory]]) -> str:
    """Tasks that at least one arm answered right: an oracle picking the arm per task reaches this."""
    scored: set[str] = set()
    solved: set[str] = set()
    for trajs in runs:
        for t in trajs:
            if t.correct is not None:
                scored.add(t.task_id)
                if t.correct:
                    solved.add(t.task_id)
    share = len(solved) / len(scored) if scored else 0.0
    return f"| {suite} | any arm (oracle) | {len(solved)}/{len(scored)} = {100 * share:.0f}% | | | | | | | |"


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
            print("| suite | agent | accuracy | mean turns | prompt tok/ep | completion tok/ep | mean PTE | wall "
                  "| accuracy vs direct | PTE vs direct |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|---|---|")
            total = sum(len(suite.tasks) for suite in args.suites) * len(args.arms)
            progress = Progress("agents", total=total, unit="episodes", every_s=10.0)
            for suite in args.suites:
                direct: JobSummary | None = None
                runs = []
                for arm in args.arms:
                    start = time.monotonic()
                    trajs = await run_arm(pool, suite, arm, args.concurrency, args.wall_time, progress)
                    wall_s = time.monotonic() - start
                    summary = summarize_job(trajs, wall_s=wall_s)
                    if arm == "direct":
                        direct = summary
                    runs.append(trajs)
                    print(row(suite.name, arm, summary, wall_s, direct), flush=True)
                    if args.show:
                        for t in trajs:
                            calls = [(c.name, c.arguments) for turn in t.turns for c in turn.tool_calls]
                            error = f" error={t.error}" if t.error else ""
                            print(f"    {t.task_id} {t.correct} ans={t.answer!r} exp={t.expected!r} "
                                  f"{t.termination.value} calls={calls}{error}")  # fmt: skip
                if len(runs) > 1:
                    print(oracle_row(suite.name, runs), flush=True)
        finally:
            await pool.aclose()
    finally:
        if engine is not None:
            engine.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked; ``args.suites`` holds the loaded suites (a bad name or file is refused here,
    before the engine starts) and ``args.arms`` the arms, ``direct`` first."""
    p = BenchParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int_at_least(1), default=50, help="tasks per suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suites", type=comma_list(str), default=["arith", "lookup", "mixed"],
                   help="registered suite names or .jsonl files, comma-separated")  # fmt: skip
    p.add_argument("--arms", type=comma_list(one_of(ARMS)), default=list(ARMS))
    p.add_argument("--concurrency", type=int_at_least(1), default=8)
    p.add_argument("--backend", default=None, help="an SGLang-protocol server (default: start the embedded engine)")
    p.add_argument("--wall-time", type=number_above(0), default=None,
                   help="per-episode wall-time budget, s (default: none)")  # fmt: skip
    p.add_argument("--request-timeout", type=number_above(0), default=3600.0,
                   help="per-request timeout, s (default 3600: load should slow requests, not fail them)")  # fmt: skip
    p.add_argument("--show", action="store_true", help="print every episode's answer and calls")
    args = p.parse_args(argv)
    suites = []
    for name in args.suites:
        try:
            suites.append(load_suite(name, args.n, args.seed))
        except (ValueError, OSError) as exc:
            p.fail("--suites", name, str(exc))
    args.suites = suites
    # The ratio columns need the direct arm's figures by the time the other arms' rows print.
    args.arms = sorted(dict.fromkeys(args.arms), key=lambda arm: arm != "direct")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
