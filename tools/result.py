"""The outcome of one tool call, as recorded in trajectories and shown to the model."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ToolResult"]


class ToolResult(BaseModel):
    """What a tool call returned to the model."""

    content: str
    """The text the model sees (already capped, with the truncation marker if any)."""
    is_error: bool = False
    """True when the call failed in a model-recoverable way (see ``error_type``)."""
    error_type: str | None = None
    """Error class name: ``ToolError``, ``ToolArgumentError``, ``UnknownToolError`` or ``ToolTimeout``."""
    truncated: bool = False
    """True when the output ran past the tool's ``max_output_tokens`` and was cut."""
    duration_s: float = Field(default=0.0, ge=0.0)
    """Wall-clock seconds spent on the call, retries included."""
    attempts: int = Field(default=1, ge=0)
    """How many times the tool was invoked (retries after timeouts or infrastructure failures)."""
