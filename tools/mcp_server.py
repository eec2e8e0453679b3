"""Serve an interleaf toolset as an MCP server (stdio or streamable HTTP).

Run one from a shell: ``python -m interleaf.tools.mcp_server package.module:toolset`` (or
``interleaf tools mcp-serve``); ``toolset`` may be a ``Toolset``, a list of tools, a ``Tool`` or a
zero-argument callable returning one of those.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolInfraError
from interleaf.tools.tool import Tool
from interleaf.tools.toolset import Toolset

__all__ = ["build_mcp_server", "load_toolset", "serve_mcp", "serve_mcp_async"]

Transport = Literal["stdio", "streamable-http"]


def build_mcp_server(toolset: Toolset, *, name: str = "interleaf", scratch_root: Path | None = None) -> Server:
    """An MCP ``Server`` exposing ``toolset``; each call gets a fresh scratch dir, removed afterwards."""
    tools = [mcp_types.Tool(name=t.name, description=t.description or None, input_schema=t.parameters) for t in toolset]

    async def list_tools(ctx: ServerRequestContext, params: Any) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        tool_ctx = ToolContext.create("mcp", root=scratch_root)
        try:
            result = await toolset.call(params.name, params.arguments or {}, tool_ctx)
        except ToolInfraError as exc:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=f"tool infrastructure failed: {exc.reason}") from exc
        finally:
            tool_ctx.remove_scratch()
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=result.content)], is_error=result.is_error
        )

    return Server(name, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_mcp_async(
    toolset: Toolset,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    name: str = "interleaf",
) -> None:
    """Serve until cancelled (stdio: until the client closes stdin)."""
    scratch_root = Path(tempfile.mkdtemp(prefix="interleaf-mcp-"))
    server = build_mcp_server(toolset, name=name, scratch_root=scratch_root)
    try:
        if transport == "stdio":
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        elif transport == "streamable-http":
            import uvicorn

            app = server.streamable_http_app(host=host)
            config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
            await uvicorn.Server(config).serve()
        else:
            raise ValueError(f"transport={transport!r} is not supported: use 'stdio' or 'streamable-http'")
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def serve_mcp(
    toolset: Toolset,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    name: str = "interleaf",
) -> None:
    """Blocking ``serve_mcp_async``: the entry point of a server process (streamable HTTP at ``/mcp``).

    SIGTERM stops it as SIGINT does, its scratch directories removed (the exit status is 143, as for
    a process killed by SIGTERM); by default SIGTERM would end the process before any cleanup.
    """

    def stop(signum: int, frame: object) -> None:
        raise _Terminated(128 + signum)

    # uvicorn takes SIGTERM for a graceful shutdown, then raises it again with the handler it found:
    # this one, which unwinds through serve_mcp_async's cleanup instead of killing the process.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        anyio.run(lambda: serve_mcp_async(toolset, transport, host, port, name=name))
    except _Terminated as exc:
        # Cleaned up; what is left is a stdio reader thread blocked on stdin, which the interpreter
        # would wait for at exit. The default SIGTERM would not have waited either.
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(exc.code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(SystemExit):
    """SIGTERM arrived: unwind (removing scratch directories), then exit with ``code``."""


def load_toolset(spec: str) -> Toolset:
    """Resolve ``module:attr`` or ``path/to/file.py:attr`` to a ``Toolset``; a spec that names no
    module, file or attribute raises ``ValueError`` naming it."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"toolset {spec!r} must look like 'package.module:name' or 'path/file.py:name'")
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ValueError(f"toolset {spec!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"toolset {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            # Only the module named (or a parent of it) missing is the caller's typo; a missing
            # import *inside* their module propagates as the bug it is.
            if exc.name is None or not (target == exc.name or target.startswith(exc.name + ".")):
                raise
            raise ValueError(
                f"toolset {spec!r}: no module named {exc.name!r} (is it installed, or on PYTHONPATH?)"
            ) from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"toolset {spec!r}: {target} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Tool | Toolset):
        try:
            inspect.signature(obj).bind()
        except TypeError as exc:  # it needs arguments: not a factory of tools
            raise ValueError(
                f"toolset {spec!r}: {attr} is a function that needs arguments ({exc}); name a Toolset, a Tool, "
                "a list of tools or a function of no arguments returning one"
            ) from None
        except ValueError:
            pass  # no signature to read (some builtins): call it and see
        obj = obj()
    if isinstance(obj, Tool):
        obj = [obj]
    if isinstance(obj, list | tuple):
        obj = Toolset(obj)
    if not isinstance(obj, Toolset):
        raise ValueError(
            f"toolset {spec!r} resolved to {type(obj).__name__}; expected a Toolset, Tool or list of tools"
        )
    return obj


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m interleaf.tools.mcp_server", description=__doc__)
    parser.add_argument("toolset", help="module:attr or file.py:attr")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--name", default="interleaf")
    args = parser.parse_args(argv)
    serve_mcp(load_toolset(args.toolset), args.transport, args.host, args.port, name=args.name)


if __name__ == "__main__":
    main()
