"""The tool error taxonomy: what went wrong decides who hears about it.

=====================  ===========================================  =====================================
exception              cause                                        behaviour
=====================  ===========================================  =====================================
``ToolError``          the tool refuses or fails on this input      shown to the model; episode goes on
``ToolArgumentError``  arguments not JSON / fail the schema         field + value shown; goes on
``UnknownToolError``   the model named a tool not in the toolset    available names shown; goes on
``ToolTimeout``        ran past its timeout or the deadline         shown to the model; goes on
``ToolInfraError``     sandbox / MCP server / a bug in the tool     raised: episode ends, reason recorded
=====================  ===========================================  =====================================

``Toolset.call`` turns the first four into ``ToolResult(is_error=True, error_type=<class name>)`` and
raises only ``ToolInfraError``. docs/tools.md carries the same table.
"""

from __future__ import annotations

__all__ = [
    "ToolArgumentError",
    "ToolError",
    "ToolInfraError",
    "ToolTimeout",
    "UnknownToolError",
]


class ToolError(Exception):
    """Raise from a tool to tell the model something went wrong; the message is shown verbatim."""


class ToolArgumentError(ToolError):
    """The arguments cannot be used: not JSON, not an object, or they fail the tool's schema."""


class UnknownToolError(ToolError, KeyError):
    """The requested tool name is not in the toolset."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ToolTimeout(ToolError):
    """The tool ran past its ``timeout_s`` or the episode's deadline and was abandoned."""


class ToolInfraError(Exception):
    """Infrastructure failed (sandbox launch, lost MCP connection, a bug in the tool).

    Not model-recoverable: the caller must end the episode and record ``reason``.
    """

    def __init__(self, reason: str, *, tool: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tool = tool
