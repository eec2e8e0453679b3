"""The ``interleaf`` command line. Each command lives in ``interleaf/commands/<name>.py``.

A user error (a bad option value, a file or module that does not exist) is one line on stderr,
``interleaf <command>: <what is wrong>``, and exit status 2 — no traceback, no box, no library
URL. Commands raise ``typer.BadParameter`` (or another usage error) for those; :func:`main`
formats them.
"""

from __future__ import annotations

import re
import sys

import typer

# typer >= 0.29 carries its own copy of click; its exceptions are the ones commands raise
# (``typer.BadParameter`` is one), and the package face does not export their base classes.
from typer._click import exceptions as click_errors

app = typer.Typer(help="interleaf: agentic tool-integrated reasoning on SGLang.", no_args_is_help=True)

USAGE_ERROR = 2
"""Exit status of a user error (as click and argparse use it)."""

# pydantic decorates its messages: a "Value error, " prefix and a documentation URL.
_PYDANTIC_NOISE = re.compile(r"(Value error, |\s*For further information visit https?://\S+)")


def _version(value: bool) -> None:
    if value:
        from interleaf import __version__

        typer.echo(f"interleaf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    """interleaf: agentic tool-integrated reasoning on SGLang."""


_registered = False


def _register() -> None:
    global _registered
    if _registered:  # main() may run more than once in a process (tests)
        return
    _registered = True
    from interleaf.commands import engine

    app.add_typer(engine.app, name="engine")

    from interleaf.commands import run

    app.command("run")(run.run)

    from interleaf.commands import probe

    app.add_typer(probe.app, name="probe")

    from interleaf.commands import tools

    app.add_typer(tools.app, name="tools")

    from interleaf.commands import report, study

    app.command("report")(report.report)

    from interleaf.commands import serve

    app.command("serve")(serve.serve)
    app.add_typer(study.app, name="study")

    from interleaf.commands import jobs

    app.add_typer(jobs.app, name="jobs")

    from interleaf.commands import simulate

    app.command("simulate")(simulate.simulate)


def usage_error_line(exc: click_errors.ClickException) -> str:
    """The one line a user error is shown as: the command, the problem (newlines folded, no URLs)."""
    message = _PYDANTIC_NOISE.sub("", exc.format_message())
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    ctx = exc.ctx if isinstance(exc, click_errors.UsageError) else None
    where = ctx.command_path if ctx is not None else "interleaf"
    hint = f" (see '{where} --help')" if ctx is not None else ""
    return f"{where}: {message}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``interleaf`` console script."""
    _register()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="interleaf", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)  # the help text, as click prints it
        sys.exit(USAGE_ERROR)
    except click_errors.ClickException as exc:
        typer.echo(usage_error_line(exc), err=True)
        sys.exit(exc.exit_code or USAGE_ERROR)
    except typer.Abort:
        typer.echo("interleaf: aborted", err=True)
        sys.exit(130)
    # Without standalone mode click returns the command's value, or the code of a typer.Exit.
    sys.exit(code if isinstance(code, int) else 0)
