"""A small toolset served over MCP by the MCP tests (``python -m interleaf.tools.mcp_server``)."""

from __future__ import annotations

import os

from interleaf.tools import Toolset, calculator, tool


@tool
def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: first addend
        b: second addend
    """
    return a + b


@tool
def crash() -> str:
    """Kill the server process (to test infrastructure failures)."""
    os._exit(3)


toolset = Toolset([add, calculator, crash])
