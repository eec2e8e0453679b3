"""``interleaf tools``: inspect, try and serve tool sets (``module:attr`` or ``file.py:attr``)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from interleaf.tools import Toolset

app = typer.Typer(help="Tools: list schemas, call a tool, serve a toolset over MCP.", no_args_is_help=True)

ToolsetSpec = Annotated[str, typer.Argument(help="The toolset: 'package.module:name' or 'path/file.py:name'.")]


def _load(spec: str | None) -> Toolset:
    """The toolset ``spec`` names (None: the built-in tools); a spec naming nothing is a usage error
    (one line, exit 2)."""
    from interleaf.tools import Toolset, answer, calculator, python_tool
    from interleaf.tools.mcp_server import load_toolset

    if spec is None:
        return Toolset([python_tool, calculator, answer])
    try:
        return load_toolset(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="TOOLSET") from None


@app.command("list")
def list_tools(
    toolset: Annotated[
        str | None,
        typer.Argument(
            help="The toolset: 'package.module:name' or 'path/file.py:name' (default: the built-in "
            "python, calculator and answer tools)."
        ),
    ] = None,
) -> None:
    """Print the OpenAI function schemas of a toolset (what the model is shown)."""
    typer.echo(json.dumps(_load(toolset).schemas(), indent=2))


@app.command("call")
def call_tool(
    toolset: ToolsetSpec,
    name: Annotated[str, typer.Argument(help="Tool name.")],
    arguments: Annotated[str, typer.Argument(help="Arguments as a JSON object.")] = "{}",
) -> None:
    """Call one tool as an agent would and print the ToolResult (errors included).

    Exit status 0 for a result, 1 for an error result (printed all the same) or an infrastructure
    failure (one line on stderr: the episode would have ended there).
    """
    from interleaf.tools import ToolContext, ToolInfraError

    ts = _load(toolset)
    ctx = ToolContext.create("cli")
    try:
        result = asyncio.run(ts.call(name, arguments, ctx))
    except ToolInfraError as exc:
        typer.echo(f"interleaf tools call: tool infrastructure failed: {exc.reason}", err=True)
        raise typer.Exit(1) from None
    finally:
        ctx.remove_scratch()
    typer.echo(result.model_dump_json(indent=2))
    if result.is_error:
        raise typer.Exit(1)


@app.command("mcp-serve")
def mcp_serve(
    toolset: ToolsetSpec,
    transport: Annotated[str, typer.Option(help="'stdio' or 'streamable-http' (served at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="Bind address for streamable-http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for streamable-http.")] = 8765,
    name: Annotated[str, typer.Option(help="Server name announced to clients.")] = "interleaf",
) -> None:
    """Serve a toolset as an MCP server."""
    from interleaf.tools.mcp_server import serve_mcp

    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter(f"--transport {transport!r}: use 'stdio' or 'streamable-http'")
    serve_mcp(_load(toolset), transport, host, port, name=name)  # type: ignore[arg-type]


@app.command("sandbox")
def sandbox_info() -> None:
    """Show which containment the python sandbox uses on this host."""
    from interleaf.tools.sandbox import SandboxLimits, SandboxUnavailable, containment_mode

    try:
        mode = containment_mode()
    except SandboxUnavailable as exc:  # no bwrap / namespaces here, or a bad INTERLEAF_SANDBOX_MODE
        raise typer.BadParameter(str(exc), param_hint="the python sandbox") from None
    typer.echo(json.dumps({"mode": mode, "default_limits": SandboxLimits().model_dump()}, indent=2))
