"""``interleaf run``: run a task suite with an agent over Ray actors; progress, then a summary.

    interleaf run --suite arith --n 20 --concurrency 8
    interleaf run --suite lookup --n 50 --backend http://gpu-1:30000 --backend http://gpu-2:30000 \\
        --retention adaptive --ray-address auto

With no ``--backend`` the embedded engine is started (and stopped) for the run; with no
``--redis-url`` a private redis-server is. Ctrl-C cancels the job: running episodes stop, their
sessions are closed, finished results are kept.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from interleaf.runtime.jobs import JobSpec


def run(
    suite: str = typer.Option("arith", "--suite", "-s", help="arith | lookup | mixed | path to a .jsonl file."),
    n: int = typer.Option(20, "--n", "-n", min=1, help="Number of tasks (episodes)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the suite generator."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Episodes running at once."),
    actors: int = typer.Option(2, "--actors", min=1, help="EpisodeWorker Ray actors."),
    backend: list[str] = typer.Option(
        [], "--backend", "-b", help="SGLang-protocol server URL (repeat for several); none: embedded engine."
    ),
    retention: str = typer.Option("adaptive", "--retention", help="none | session | ttl | adaptive."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis URL (default: a private redis-server)."),
    agent: str = typer.Option("tir", "--agent", help="Registered agent name."),
    max_turns: int | None = typer.Option(None, "--max-turns", min=1, help="Turn budget per episode."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Token budget per episode."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="Tokens per turn."),
    wall_time: float | None = typer.Option(None, "--wall-time", help="Wall-clock budget per episode, seconds."),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, help="Sampling temperature."),
    job_id: str | None = typer.Option(None, "--job-id", help="Job id (default: generated)."),
    engine_arg: list[str] = typer.Option(
        [], "--engine-arg", help="Extra flag for the embedded engine, e.g. --engine-arg=--executor=sim."
    ),
) -> None:
    """Run a task suite and print accuracy, turns, tokens, tool calls, cache figures and wall time."""
    from interleaf.agents import get_agent, load_suite
    from interleaf.runtime.jobs import JobSpec

    try:
        spec = JobSpec(
            suite=suite, n=n, seed=seed, agent=agent, concurrency=concurrency, actors=actors,
            backend_urls=list(backend), retention=retention, max_turns=max_turns, max_tokens=max_tokens,
            max_new_tokens=max_new_tokens, wall_time_s=wall_time, temperature=temperature, job_id=job_id,
        )  # fmt: skip
        load_suite(suite, n, seed)  # before anything is started
        get_agent(agent)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    raise typer.Exit(run_spec(spec, redis_url=redis_url, ray_address=ray_address, engine_args=engine_arg))


def run_spec(
    spec: JobSpec, *, redis_url: str | None = None, ray_address: str | None = None, engine_args: Sequence[str] = ()
) -> int:
    """Bring up the embedded defaults, run ``spec`` with a progress bar, print the summary; exit code."""
    import ray
    from rich.console import Console

    from interleaf.runtime.jobs.embedded import EmbeddedServices

    console = Console(stderr=True)
    given = list(spec.backend_urls)
    if not given:
        console.print("[dim]no --backend: starting the embedded engine (first start converts the model)…[/]")
    with EmbeddedServices(given, redis_url, engine_args=list(engine_args)) as services:
        spec = spec.model_copy(update={"backend_urls": services.backend_urls})
        try:
            return asyncio.run(_run(spec, services.redis_url, ray_address, console))
        finally:
            if ray.is_initialized():
                ray.shutdown()


async def _run(spec: JobSpec, redis_url: str | None, ray_address: str | None, console: Console) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from interleaf.runtime.jobs import JobRunner, summary_rows
    from interleaf.runtime.jobs.store import JobStatus, JobStore

    store = JobStore(redis_url) if redis_url else None
    correct = 0
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("correct {task.fields[correct]}"), TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        bar = progress.add_task(f"{spec.suite} × {spec.n}", total=spec.n, correct=0)

        def on_event(event) -> None:
            nonlocal correct
            if event.type == "episode_finished":
                correct += int((event.data.get("score") or 0) >= 1.0)
                progress.update(bar, advance=1, correct=correct)
            elif event.type == "worker_restarted":
                progress.console.print(f"[yellow]worker {event.data['worker']} restarted: {event.data['reason']}[/]")

        runner = JobRunner(spec, store=store, ray_address=ray_address, on_event=on_event)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(runner.cancel()))
        try:
            result = await runner.run()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            if store is not None:
                await store.aclose()

    table = Table(title=f"job {result.job_id} · {spec.suite} · {result.status.value}", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for label, value in summary_rows(result.trajectories, summary=result.summary):
        table.add_row(label, value)
    out = Console()
    out.print(table)
    out.print(f"trajectories: {result.output_path}")
    return 0 if result.status == JobStatus.SUCCEEDED else 1


__all__ = ["run", "run_spec"]
