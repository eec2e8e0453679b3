"""The ``interleaf`` command line. Each command lives in ``interleaf/commands/<name>.py``."""

from __future__ import annotations

import typer

app = typer.Typer(help="interleaf: agentic tool-integrated reasoning on SGLang.", no_args_is_help=True)


def _register() -> None:
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


def main() -> None:
    _register()
    app()
