"""``interleaf simulate``: retention policies on N simulated servers, virtual time (every figure SIMULATED)."""

from __future__ import annotations

import math
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

    from interleaf.runtime.simulate import CapacityProbe, PolicyResult


def simulate(
    workload: str = typer.Option(
        "swe",
        "--workload",
        "-w",
        help="reference | swe | bfcl, or a trace JSONL file (Mooncake/AIPerf format, or interleaf's own "
        "trajectories.jsonl: a recorded job), gzip-compressed or not.",
    ),
    agents: int = typer.Option(1000, "--agents", "-n", help="Sessions to generate (a trace file: the first N)."),
    turns: int | None = typer.Option(
        None, "--turns", help="Turns per generated agent (default: the workload's); not with a trace file."
    ),
    servers: int = typer.Option(8, "--servers", help="Simulated servers."),
    gpu: str = typer.Option("H100", "--gpu", help="Hardware profile: H100, H200, A100, V100, RTX-4090."),
    model: str = typer.Option("Llama-3.1-8B-Instruct", "--model", help="Model profile."),
    policies: str = typer.Option(
        "none,session,ttl,adaptive,unbounded,oracle", "--policies", help="Comma-separated; see docs/retention.md."
    ),
    budget_ratio: float = typer.Option(0.5, "--budget-ratio", help="KV budget / the agents' peak total context."),
    kv_budget_fraction: float = typer.Option(0.75, "--kv-budget-fraction", help="KV budget / KV capacity."),
    token_block: int = typer.Option(16, "--token-block", help="Real tokens per simulated token (1 = exact)."),
    chunked_prefill_size: int = typer.Option(8192, "--chunked-prefill-size", help="Prefill chunk, real tokens."),
    max_running: int = typer.Option(64, "--max-running-requests", help="Concurrent requests per server."),
    admission_overcommit: float = typer.Option(
        1.0,
        "--admission-overcommit",
        help="Admission control admits episodes while their projected peaks sum to at most this x the KV budget.",
    ),
    priority_scheduling: bool = typer.Option(
        True,
        "--priority-scheduling/--fcfs",
        help="Servers admit turns inside sessions before stateless ones (SGLang's --enable-priority-scheduling), "
        "or first come, first served.",
    ),
    seed: int = typer.Option(0, "--seed"),
    jobs: int = typer.Option(
        0, "--jobs", "-j", help="Policies simulated at once, one process each (0 = one per CPU core)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    capacity: float | None = typer.Option(
        None,
        "--capacity",
        help="Capacity planning: the fewest servers meeting this JCT target (seconds), per "
        "policy; each server's KV from its GPU's memory. --servers is then the smallest count tried.",
    ),
    capacity_stat: str = typer.Option(
        "mean", "--capacity-stat", help="JCT statistic the target applies to: mean | p50 | p95."
    ),
    max_servers: int = typer.Option(256, "--max-servers", help="Largest server count --capacity tries."),
) -> None:
    """Replay a workload against simulated servers once per retention policy; print JCT, makespan, recompute."""
    from pydantic import TypeAdapter, ValidationError

    from interleaf.runtime.engine.sim import SIM_CONTEXT_LENGTH
    from interleaf.runtime.simulate import (
        SHAPES,
        CapacityPlan,
        SimulationReport,
        SimulationSetup,
        TraceError,
        check_policy,
        fit_context,
        generate,
        kv_floor,
        load_trace,
        render,
        sessions,
        simulate_policies,
    )
    from interleaf.runtime.simulate.simulation import peak_context, server_kv_tokens

    # Every option is checked before anything runs: one line naming the option and the value, exit code 2.
    for flag, value, least in (("--agents", agents, 1), ("--jobs", jobs, 0), ("--max-servers", max_servers, 1)):
        if value < least:
            raise typer.BadParameter(f"{flag}={value} must be >= {least}")
    generated = workload in SHAPES
    if turns is not None and not generated:
        raise typer.BadParameter(f"--turns={turns} applies to a generated workload ({', '.join(SHAPES)}); a trace "
                                 "file's sessions keep their own turns: leave --turns out")  # fmt: skip
    if turns is not None and turns < 1:
        raise typer.BadParameter(f"--turns={turns} must be >= 1")
    if capacity is not None and not (math.isfinite(capacity) and capacity > 0):
        raise typer.BadParameter(f"--capacity={capacity} must be a finite number of seconds > 0 (the JCT target)")
    if capacity_stat not in ("mean", "p50", "p95"):
        raise typer.BadParameter(f"--capacity-stat={capacity_stat!r} is not one of mean, p50, p95")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise typer.BadParameter(f"--policies={policies!r} names no policy (comma-separated, e.g. none,adaptive)")
    if len(set(names)) < len(names):
        raise typer.BadParameter(f"--policies={policies!r} names a policy twice")
    try:
        for name in names:
            check_policy(name)
    except ValueError as exc:
        raise typer.BadParameter(f"--policies: {exc}") from None
    try:
        setup = SimulationSetup(
            servers=servers, gpu=gpu, model=model, budget_ratio=budget_ratio, kv_budget_fraction=kv_budget_fraction,
            token_block=token_block, chunked_prefill_size=chunked_prefill_size, max_running_requests=max_running,
            admission_overcommit=admission_overcommit, priority_scheduling=priority_scheduling, seed=seed,
        )  # fmt: skip
    except ValidationError as exc:
        raise typer.BadParameter(_invalid_setup(exc)) from None
    try:
        if generated:
            scripts = sessions(generate(workload, agents, seed=seed, turns=turns))
        elif Path(workload).is_file():
            scripts = sessions(load_trace(workload))[:agents]
        else:
            raise ValueError(f"--workload={workload!r} is neither one of {', '.join(SHAPES)} nor a trace file")
    except (TraceError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    # Generated or traced, a session is cut before the turn that would pass the model's window, in real tokens:
    # the same turns at every --token-block (the simulated engine counts its window in simulated tokens).
    scripts, cut = fit_context(scripts, SIM_CONTEXT_LENGTH)
    if not scripts:
        raise typer.BadParameter(f"--workload={workload!r}: every session's first turn passes the simulated models' "
                                 f"{SIM_CONTEXT_LENGTH:,}-token context window ({cut:,} turns cut): nothing to "
                                 "simulate")  # fmt: skip
    if capacity is not None:
        from interleaf.runtime.simulate import plan_capacity, render_plan

        def progress(p: CapacityProbe) -> None:
            jct = "-" if p.jct_s is None else f"{p.jct_s:.1f} s"
            failed = f", {p.result.failed} failed" if p.result.failed else ""
            typer.echo(f"[{p.servers} servers: JCT {capacity_stat} {jct}{failed}, {p.result.wall_s:.0f} s wall]",
                       err=True)  # fmt: skip

        plans = []
        for name in names:
            try:
                plan = plan_capacity(
                    scripts, name, setup, target_s=capacity, statistic=capacity_stat,  # type: ignore[arg-type]
                    min_servers=servers, max_servers=max(servers, max_servers), on_probe=progress,
                )  # fmt: skip
            except ValueError as exc:
                raise typer.BadParameter(f"--capacity: {exc}") from None
            plans.append(plan)
            if not as_json:
                typer.echo(render_plan(plan))
        if as_json:  # one document: a list of plans, one per policy
            typer.echo(TypeAdapter(list[CapacityPlan]).dump_json(plans, indent=2).decode())
        return
    report = SimulationReport(
        workload=workload,
        agents=len(scripts),
        peak_context_tokens=peak_context(scripts),
        turns_cut=cut,
        kv_tokens_per_server=server_kv_tokens(scripts, setup),
        tool_floor_s=max(s.tool_time_s for s in scripts),
        kv_floor=kv_floor(scripts, setup),
        setup=setup,
        results=[],
    )
    try:
        for result in simulate_policies(scripts, names, setup, jobs=jobs or os.cpu_count() or 1):
            report.results.append(result)
            typer.echo(f"[{result.policy}: done in {result.wall_s:.0f} s wall; SIMULATED {_summary(result)}]",
                       err=True)  # fmt: skip
    except BrokenProcessPool:
        # A worker killed from outside (the kernel's OOM killer, most often: a policy that keeps every context,
        # like `oracle`, holds the most) takes the pool down; the policies that finished are still worth a table.
        lost = [n for n in names if n not in {r.policy for r in report.results}]
        typer.echo(f"error: a simulation worker died (killed; out of memory?) before {', '.join(lost)} finished; "
                   "the table below has the policies that did. Run fewer at once (--jobs 1) or fewer agents.",
                   err=True)  # fmt: skip
        if not report.results:
            raise typer.Exit(1) from None
    report.results.sort(key=lambda r: names.index(r.policy))
    typer.echo(report.model_dump_json(indent=2) if as_json else render(report))


def _summary(result: PolicyResult) -> str:
    """A finished policy's figures in one line (progress on stderr)."""
    if result.jct_mean_s is None or result.jct_p95_s is None:
        return f"no session ended, stopped at {result.makespan_s:.1f} s"
    return (f"mean JCT {result.jct_mean_s:.1f} s, p95 {result.jct_p95_s:.1f} s, makespan {result.makespan_s:.1f} s"
            + (f", {result.failed} failed" if result.failed else ""))  # fmt: skip


def _invalid_setup(exc: ValidationError) -> str:
    """``SimulationSetup``'s errors in one line, each naming the option and the value."""
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["loc"]:
            problems.append(f"--{str(err['loc'][0]).replace('_', '-')}={err['input']!r}: {msg}")
        else:  # a check across options (the model on the GPU) names them itself
            problems.append(msg)
    return "; ".join(problems)
