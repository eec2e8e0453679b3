"""The ``interleaf`` command line. Each command lives in ``interleaf/commands/<name>.py``."""

from __future__ import annotations

import typer

app = typer.Typer(help="interleaf: agentic tool-integrated reasoning on SGLang.", no_args_is_help=True)


def _register() -> None:
    from interleaf.commands import engine

    app.add_typer(engine.app, name="engine")


def main() -> None:
    _register()
    app()
