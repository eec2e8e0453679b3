"""An MCP server (stdio) whose tools' names and schemas no interleaf tool could have, for the MCP
tests: ``a.b`` and ``a_b`` (the same name once made OpenAI-valid), one with an empty name, and
``match`` whose schema holds a pattern Python's ``re`` takes exponential time on. Every call echoes
its arguments."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

CATASTROPHIC = "^(a+)+$"
"""Backtracking regex engines take 2^n steps on ``"a" * n + "!"``."""

_OBJECT = {"type": "object", "properties": {"s": {"type": "string"}}}
TOOLS = [
    mcp_types.Tool(name="a.b", description="dotted", input_schema=_OBJECT),
    mcp_types.Tool(name="a_b", description="underscored", input_schema=_OBJECT),
    mcp_types.Tool(name="", description="nameless", input_schema=_OBJECT),
    mcp_types.Tool(
        name="match",
        description="a string the server's pattern must match",
        input_schema={
            "type": "object",
            "properties": {"s": {"type": "string", "pattern": CATASTROPHIC}, "n": {"type": "integer"}},
            "required": ["s"],
        },
    ),
]


async def list_tools(ctx: ServerRequestContext, params: Any) -> mcp_types.ListToolsResult:
    return mcp_types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
    text = json.dumps({"tool": params.name, "arguments": params.arguments or {}})
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)])


async def main() -> None:
    server = Server("odd", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
