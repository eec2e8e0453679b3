"""interleaf.tools: write a typed Python function, get a safe model-callable tool.

Public API (the implementation modules are private to this package's layout)::

    @tool / Tool / Toolset / ToolContext / ToolResult       the SDK
    ToolError, ToolArgumentError, UnknownToolError,          model-recoverable errors
    ToolTimeout, ToolInfraError                              (and the one that ends an episode)
    python_tool, calculator, answer, Corpus, Document,       built-in tools
    make_corpus_tools
    mcp_toolset, serve_mcp                                   MCP in both directions
"""

from interleaf.tools.builtin import (
    Corpus,
    Document,
    SearchHit,
    answer,
    calculator,
    make_corpus_tools,
    make_python_tool,
    python_tool,
)
from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolArgumentError, ToolError, ToolInfraError, ToolTimeout, UnknownToolError
from interleaf.tools.result import ToolResult
from interleaf.tools.sandbox import SandboxLimits, SandboxRun, run_python
from interleaf.tools.tool import Tool, tool
from interleaf.tools.toolset import Toolset

# The MCP SDK takes ~0.4 s to import; load it only when MCP is used.
_LAZY = {
    "mcp_toolset": "interleaf.tools.mcp_client",
    "build_mcp_server": "interleaf.tools.mcp_server",
    "serve_mcp": "interleaf.tools.mcp_server",
    "serve_mcp_async": "interleaf.tools.mcp_server",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'interleaf.tools' has no attribute {name!r}")


__all__ = [
    "Corpus",
    "Document",
    "SandboxLimits",
    "SandboxRun",
    "SearchHit",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolInfraError",
    "ToolResult",
    "ToolTimeout",
    "Toolset",
    "UnknownToolError",
    "answer",
    "build_mcp_server",
    "calculator",
    "make_corpus_tools",
    "make_python_tool",
    "mcp_toolset",
    "python_tool",
    "run_python",
    "serve_mcp",
    "serve_mcp_async",
    "tool",
]
