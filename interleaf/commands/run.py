"""``interleaf run``: run a task suite with an agent over Ray actors; progress, then a summary.

    interleaf run --suite arith --n 20 --concurrency 8
    interleaf run --suite lookup --n 50 --backend http://gpu-1:30000 --backend http://gpu-2:30000 \\
        --retention adaptive --ray-address auto
    interleaf run --suite arith --n 4 --json > result.json      # the summary as JSON; progress on stderr

The job options are the ``JobSpec`` fields (type, default, docstring as help), so the command line,
the API and the queue accept the same settings; ``--ray-address``, ``--redis-url`` and
``--engine-arg`` are the run's own. With no ``--backend`` the embedded engine is started (and stopped)
for the run; with no ``--redis-url`` a private redis-server is. Ctrl-C cancels the job: running
episodes stop, their sessions are closed, finished results are kept. A server that lacks what the job
asks for (streaming sessions for a session-holding ``--retention``) is named on stderr with the flag
that enables it; the job still runs there, stateless, and the summary shows requested vs effective.

Episodes that ended in error (termination ``error``, ``backend_error``, ``tool_infra_error``) are named
on stderr, one line per distinct reason with its count. Exit status: 0 when the job succeeded and at
least one episode did not end in error; 1 when the job failed or was cancelled, or every episode ended
in error (a backend that cannot be reached); 2 for a bad option (nothing ran).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import typing
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from interleaf.runtime.jobs.spec import JobSpec

if TYPE_CHECKING:
    from rich.console import Console

    from interleaf.telemetry.records import Trajectory

# Flags that are not ``--<field-name>``: the documented spellings and the short forms.
_FLAGS: dict[str, tuple[str, ...]] = {
    "suite": ("--suite", "-s"),
    "n": ("--n", "-n"),
    "concurrency": ("--concurrency", "-c"),
    "backend_urls": ("--backend", "-b"),
    "wall_time_s": ("--wall-time",),
}
# What the command line adds to a field's docstring.
_CLI_HELP: dict[str, str] = {"backend_urls": "Repeat for several; none: the embedded engine is started."}


def _flags(field: str) -> tuple[str, ...]:
    return _FLAGS.get(field, (f"--{field.replace('_', '-')}",))


def _number_parser(kind: type[int] | type[float]) -> Callable[[Any], Any]:
    """The command line's reading of an integer or number option: a value that is not one is refused
    repeating it (``--n 2.5``: ``got '2.5'``), as ``JobSpec``'s own errors do."""
    what = "a valid integer" if kind is int else "a valid number"

    def parse(raw: Any) -> Any:
        if isinstance(raw, kind) and not isinstance(raw, bool):  # the default
            return raw
        try:
            return kind(raw)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"Input should be {what}, got {raw!r}") from None

    return parse


def spec_options(cli_help: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """One option per ``JobSpec`` field, with the field's type, default and docstring: the model
    is the one place a job's settings are declared (the API and the queue read the same).
    ``cli_help``: what a command adds to a field's docstring (default: ``interleaf run``'s)."""
    extra = _CLI_HELP if cli_help is None else cli_help
    options = []
    for name, field in JobSpec.model_fields.items():
        help_text = " ".join(filter(None, [(field.description or "").replace("``", ""), extra.get(name)]))
        annotation = field.annotation
        kinds = set(typing.get_args(annotation)) - {type(None)} or {annotation}
        number = next(iter(kinds)) if len(kinds) == 1 and kinds <= {int, float} else None
        if typing.get_origin(annotation) is list:  # typer takes plain item types; JobSpec checks the items
            annotation = list[str]
        default = field.get_default(call_default_factory=True)
        option = typer.Option(
            default, *_flags(name), help=help_text, **({"parser": _number_parser(number)} if number else {})
        )
        options.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return options


def _invalid_spec(exc: ValidationError) -> typer.BadParameter:
    """pydantic's errors as a usage error (exit code 2): the flags, then per problem the value and what
    is wrong (the CLI prints it on one line, problems separated by '; ')."""
    flags, problems = [], []
    for err in exc.errors():
        flag = _flags(str(err["loc"][0]))[0] if err["loc"] else "(options)"
        flags.append(f"'{flag}'")
        if err["type"] == "value_error":  # JobSpec's own validators name the field, the value and the choices
            problems.append(str(err["ctx"]["error"]))
        else:
            problems.append(f"{flag}: {err['msg']}, got {err['input']!r}")
    return typer.BadParameter("; ".join(problems), param_hint=", ".join(flags))


def run(
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis URL (default: a private redis-server)."),
    engine_arg: list[str] = typer.Option(
        [], "--engine-arg", help="Extra flag for the embedded engine, e.g. --engine-arg=--executor=sim."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON on stdout (job, status, summary, rows); progress on stderr."
    ),
    **spec_options: Any,
) -> None:
    """Run a task suite and print accuracy, turns, tokens, tool calls, cache figures and wall time."""
    from interleaf.agents import load_suite
    from interleaf.telemetry.tracing import check_otlp_protocol

    try:
        check_otlp_protocol()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="environment") from None
    try:
        spec = JobSpec(**spec_options)
    except ValidationError as exc:
        raise _invalid_spec(exc) from None
    try:  # a .jsonl suite is read here, before the engine is started
        load_suite(spec.suite, spec.n, spec.seed)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--suite") from None
    raise typer.Exit(
        run_spec(spec, redis_url=redis_url, ray_address=ray_address, engine_args=engine_arg, as_json=as_json)
    )


# Typer reads the options from the signature: the JobSpec fields, then the run's own.
run.__signature__ = inspect.signature(run).replace(  # type: ignore[attr-defined]
    parameters=[
        *spec_options(),
        *(
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(run).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ),
    ]
)


def run_spec(
    spec: JobSpec,
    *,
    redis_url: str | None = None,
    ray_address: str | None = None,
    engine_args: Sequence[str] = (),
    as_json: bool = False,
) -> int:
    """Bring up the embedded defaults, run ``spec`` with a progress bar, print the summary; exit code.

    ``as_json``: the result goes to stdout as one JSON object (``job_id``, ``status``, ``output_path``,
    ``summary``: the ``JobSummary``, ``rows``: its table) instead of the table; everything else
    (progress, warnings) is on stderr either way."""
    import ray
    from rich.console import Console

    from interleaf.runtime.jobs.embedded import EmbeddedServices

    console = Console(stderr=True)
    given = list(spec.backend_urls)
    if not given:
        console.print("[dim]no --backend: starting the embedded engine (first start converts the model)…[/]")
    with EmbeddedServices(given, redis_url, engine_args=list(engine_args)) as services:
        spec = spec.model_copy(update={"backend_urls": services.backend_urls})
        _say_capability_gaps(spec)
        try:
            return asyncio.run(_run(spec, services.redis_url, ray_address, console, as_json=as_json))
        finally:
            if ray.is_initialized():
                ray.shutdown()


def _say_capability_gaps(spec: JobSpec) -> None:
    """One stderr line per server that lacks what the job asks for (e.g. streaming sessions for
    ``--retention session``): the URL, the capability, the server flag that enables it, the fallback."""
    from interleaf.runtime.client.capabilities import probe_retention_gaps

    for gap in asyncio.run(probe_retention_gaps(spec.backend_urls, spec.retention)):
        typer.echo(f"interleaf run: warning: {gap.message()}", err=True)


async def _run(
    spec: JobSpec, redis_url: str | None, ray_address: str | None, console: Console, *, as_json: bool = False
) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from interleaf.runtime.jobs import JobRunner
    from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobStatus, JobStore

    store = JobStore(redis_url) if redis_url else None
    correct = 0
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("correct {task.fields[correct]}"), TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        bar = progress.add_task(f"{spec.suite} × {spec.n}", total=spec.n, correct=0)

        def on_event(event: JobEvent) -> None:
            nonlocal correct
            if event.type == JobEventType.EPISODE_FINISHED:
                correct += int((event.data.get("score") or 0) >= 1.0)
                progress.update(bar, advance=1, correct=correct)
            elif event.type == JobEventType.WORKER_RESTARTED:
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

    errors = episode_errors(result.trajectories)
    for reason, count in errors:
        typer.echo(f"interleaf run: {count} episode{'s' * (count > 1)} ended in error: {reason}", err=True)
    all_failed = bool(result.trajectories) and sum(count for _, count in errors) == len(result.trajectories)
    if all_failed:
        typer.echo(f"interleaf run: every episode ({len(result.trajectories)}) ended in error", err=True)
    code = 0 if result.status == JobStatus.SUCCEEDED and not all_failed else 1
    if as_json:
        document = {
            "job_id": result.job_id,
            "status": result.status.value,
            "output_path": result.output_path,
            "summary": result.summary.model_dump(mode="json"),
            "rows": [list(row) for row in result.summary.rows()],
            "episode_errors": [{"reason": reason, "episodes": count} for reason, count in errors],
        }
        typer.echo(json.dumps(document, indent=2))
        return code
    table = Table(title=f"job {result.job_id} · {spec.suite} · {result.status.value}", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for label, value in result.summary.rows():
        table.add_row(label, value)
    out = Console()
    out.print(table)
    out.print(f"trajectories: {result.output_path}")
    return code


def episode_errors(trajectories: Sequence[Trajectory]) -> list[tuple[str, int]]:
    """Why episodes failed (terminations that are failures of the run, not of the model: ``error``,
    ``backend_error``, ``tool_infra_error``): each reason's first line once, with how many episodes
    ended with it, most frequent first."""
    from interleaf.runtime.jobs.store import one_line
    from interleaf.telemetry.records import TerminationReason

    failed = {TerminationReason.ERROR, TerminationReason.BACKEND_ERROR, TerminationReason.TOOL_INFRA_ERROR}
    reasons = Counter(
        one_line(t.error or f"termination {t.termination.value}, no reason recorded")
        for t in trajectories
        if t.termination in failed
    )
    return reasons.most_common()


__all__ = ["episode_errors", "run", "run_spec", "spec_options"]
