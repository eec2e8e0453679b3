"""``interleaf jobs``: submit jobs to a remote ``interleaf serve`` and watch them (as ``ray job``).

    interleaf jobs submit --server http://127.0.0.1:8080 --suite arith --n 8 --follow
    interleaf jobs list --server http://127.0.0.1:8080
    interleaf jobs status JOB_ID --server ...          # the record; --json for the raw JSON
    interleaf jobs logs JOB_ID --server ... --follow   # the event stream, one line per event
    interleaf jobs cancel JOB_ID --server ...

``--server`` defaults to ``$INTERLEAF_SERVER`` (else http://127.0.0.1:8080); ``--token`` to
``$INTERLEAF_API_TOKEN`` (sent as ``Authorization: Bearer``). ``submit`` takes the ``JobSpec`` options
``interleaf run`` takes; the server validates them (its suites, agents and limits count). ``--follow``
shows a progress bar from the job's events and ends with the summary table (``--json``: the result as
JSON on stdout). A refused request or an unreachable server is one line on stderr, exit 2; a job that
did not succeed exits 1.
"""

from __future__ import annotations

import datetime
import inspect
import json
import typing
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interleaf.commands.run import spec_options

if TYPE_CHECKING:
    from interleaf.jobs_client import JobsAPIError, JobsClient
    from interleaf.runtime.jobs.store import JobRecord

app = typer.Typer(help="Jobs on a remote `interleaf serve`: submit, list, status, logs, cancel.", no_args_is_help=True)

DEFAULT_SERVER = "http://127.0.0.1:8080"

Server = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="INTERLEAF_SERVER",
        help="Base URL of the jobs API (`interleaf serve`).",
        show_default=DEFAULT_SERVER,
    ),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="INTERLEAF_API_TOKEN", help="Bearer token the server requires.", show_default=False),
]
JobId = Annotated[str, typer.Argument(help="The job id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]


def _client(server: str | None, token: str | None) -> JobsClient:
    from interleaf.jobs_client import JobsClient

    url = server or DEFAULT_SERVER
    try:
        return JobsClient(url, token=token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--server") from None


def _failed(command: str, exc: JobsAPIError) -> typer.Exit:
    """One line on stderr; exit 2 when the request was refused (4xx) or the server is unreachable."""
    typer.echo(f"interleaf jobs {command}: {exc}", err=True)
    return typer.Exit(2 if exc.status is None or exc.status < 500 else 1)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _record_rows(record: JobRecord) -> list[tuple[str, str]]:
    spec = record.spec
    return [
        ("job", record.id),
        ("status", record.status.value + (" (cancel requested)" if record.cancel_requested else "")),
        ("suite", f"{spec.get('suite', '?')} × {spec.get('n', '?')}, retention {spec.get('retention', '?')}"),
        ("progress", f"{record.n_done}/{record.n_total} done, {record.n_correct} correct"),
        ("created", _when(record.created_at)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        *([("error", record.error)] if record.error else []),
        *([("trajectories", record.output_path)] if record.output_path else []),
    ]


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)


def _follow(client: JobsClient, record: JobRecord) -> None:
    """A progress bar on stderr fed by the job's events, until the job has ended."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from interleaf.runtime.jobs.store import JobEventType

    console = Console(stderr=True)
    correct = 0
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("correct {task.fields[correct]}"), TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        total = record.n_total or int(record.spec.get("n") or 0) or None
        bar = progress.add_task(f"{record.id} · {record.spec.get('suite', '?')}", total=total, correct=0)
        for event in client.events(record.id):
            if event.type == JobEventType.JOB_STARTED and event.data.get("n_total"):
                progress.update(bar, total=int(event.data["n_total"]))
            elif event.type == JobEventType.EPISODE_FINISHED:
                correct += int((event.data.get("score") or 0) >= 1.0)
                progress.update(bar, advance=1, correct=correct)
            elif event.type in (JobEventType.WORKER_RESTARTED, JobEventType.EPISODE_RETRIED):
                progress.console.print(f"[yellow]{event.type.value}: {event.data.get('reason', '')}[/]")
            elif event.type == JobEventType.JOB_CANCELLED:
                progress.console.print("[yellow]job cancelled[/]")
            elif event.type == JobEventType.JOB_RESUMED:
                kept, by = event.data.get("n_done", 0), event.data.get("worker") or "another worker"
                progress.console.print(f"[yellow]job resumed by {by}: {kept} finished episodes kept[/]")
            elif event.type == JobEventType.CAPABILITY_MISSING:  # one line, as `interleaf run` prints it
                line = f"interleaf jobs submit: warning: {event.data.get('message', '')}"
                progress.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _result(client: JobsClient, job_id: str, as_json: bool) -> int:
    """The ended job: its summary table (or JSON); exit code 0 when it succeeded."""
    from interleaf.runtime.jobs.store import JobStatus

    record = client.wait(job_id, poll_s=0.5)
    reply = client.summary_reply(job_id)
    if as_json:
        document = {
            "job_id": record.id,
            "status": record.status.value,
            "error": record.error,
            "output_path": record.output_path,
            "summary": reply.summary.model_dump(mode="json"),
            "rows": [list(row) for row in reply.rows],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        suite = record.spec.get("suite", "?")
        _print_table(f"job {record.id} · {suite} · {record.status.value}", list(reply.rows))
        if record.error:
            typer.echo(f"error: {record.error}", err=True)
    return 0 if record.status == JobStatus.SUCCEEDED else 1


def submit(
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    follow: bool = typer.Option(False, "--follow", "-f", help="Show progress until the job ends, then the summary."),
    as_json: AsJson = False,
    **spec_fields: Any,
) -> None:
    """Submit a job (the options of `interleaf run`); with --follow, watch it to the end."""
    from interleaf.jobs_client import JobsAPIError

    body = {name: value for name, value in spec_fields.items() if value is not None}
    with _client(server, token) as client:
        try:
            record = client.submit(body)
            if not follow:
                if as_json:
                    typer.echo(record.model_dump_json(indent=2))
                else:
                    typer.echo(record.id)
                    typer.echo(
                        f"submitted {record.id}; follow it with: interleaf jobs logs {record.id} --follow", err=True
                    )
                return
            typer.echo(f"submitted {record.id} to {client.url}", err=True)
            _follow(client, record)
            code = _result(client, record.id, as_json)
        except JobsAPIError as exc:
            raise _failed("submit", exc) from None
    raise typer.Exit(code)


# Typer reads the options from the signature: the command's own (their annotations resolved, since
# typer does not resolve them through a replaced signature), then one per JobSpec field.
_hints = typing.get_type_hints(submit, include_extras=True)
submit.__signature__ = inspect.signature(submit).replace(  # type: ignore[attr-defined]
    parameters=[
        *(
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=_hints[name])
            for name, p in inspect.signature(submit).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ),
        *spec_options({"backend_urls": "Repeat for several; none: the server's default backends."}),
    ]
)
app.command("submit")(submit)


@app.command("list")
def list_jobs(
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many, newest first."),
    as_json: AsJson = False,
) -> None:
    """The newest jobs: id, status, progress, suite."""
    from interleaf.jobs_client import JobsAPIError

    with _client(server, token) as client:
        try:
            records = client.list(limit=limit)
        except JobsAPIError as exc:
            raise _failed("list", exc) from None
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "status", "done", "correct", "suite", "created")
    for r in records:
        table.add_row(
            r.id, r.status.value, f"{r.n_done}/{r.n_total}", str(r.n_correct), str(r.spec.get("suite", "?")),
            _when(r.created_at),
        )  # fmt: skip
    Console().print(table)


@app.command("status")
def status(job_id: JobId, server: Server = DEFAULT_SERVER, token: Token = None, as_json: AsJson = False) -> None:
    """One job's record (status, progress, error) and, once an episode finished, its summary."""
    from interleaf.jobs_client import JobsAPIError

    with _client(server, token) as client:
        try:
            record = client.get(job_id)
            reply = client.summary_reply(job_id)
        except JobsAPIError as exc:
            raise _failed("status", exc) from None
    if as_json:
        document = {"job": record.model_dump(mode="json"), "summary": reply.summary.model_dump(mode="json")}
        typer.echo(json.dumps(document, indent=2))
        return
    _print_table(f"job {record.id}", [*_record_rows(record), *reply.rows])


@app.command("logs")
def logs(
    job_id: JobId,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing events until the job ends."),
    as_json: AsJson = False,
) -> None:
    """The job's events, one line each (JSON Lines with --json)."""
    from interleaf.jobs_client import JobsAPIError
    from interleaf.runtime.jobs.store import one_line

    with _client(server, token) as client:
        try:
            for event in client.events(job_id, follow=follow):
                if as_json:
                    typer.echo(event.model_dump_json())
                    continue
                episode = "" if event.episode is None else f" episode {event.episode}"
                # One line per event: a long text (a job_failed event's whole ``detail``) as its first line.
                details = " ".join(f"{k}={one_line(v) if isinstance(v, str) else v}" for k, v in event.data.items())
                typer.echo(f"{_when(event.ts)} {event.type.value}{episode} {details}".rstrip())
        except JobsAPIError as exc:
            raise _failed("logs", exc) from None


@app.command("cancel")
def cancel(job_id: JobId, server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Ask the server to cancel a job (running episodes stop; finished results are kept)."""
    from interleaf.jobs_client import JobsAPIError

    with _client(server, token) as client:
        try:
            record = client.cancel(job_id)
        except JobsAPIError as exc:
            raise _failed("cancel", exc) from None
    typer.echo(f"{record.id}: {record.status.value}, cancel requested")


__all__ = ["app"]
