"""``interleaf engine serve``: the embedded SGLang-compatible engine."""

from __future__ import annotations

import typer

app = typer.Typer(help="The embedded SGLang-compatible engine.", no_args_is_help=True)


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the engine. Flags are SGLang's (--host, --port, --max-total-tokens, --executor sim, ...; see --help)."""
    from interleaf.runtime.engine.__main__ import main

    main(list(ctx.args))
