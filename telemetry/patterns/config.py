"""Detector settings: every [ours] threshold and the tool-type mapping, named here, not hidden in code."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class ToolType(StrEnum):
    """What kind of work a tool does. Tool mixing (PAPERS.md §B.2) counts types, not names: a
    search + visit trajectory is one retrieval workflow, search + python is mixing."""

    RETRIEVAL = "retrieval"
    """Finding and reading documents (search, visit, fetch, browse)."""
    COMPUTATION = "computation"
    """Running code or arithmetic (python, calculator, code interpreter)."""
    ANSWER = "answer"
    """The channel the final answer goes through; never counted as tool use."""


DEFAULT_TOOL_TYPES: dict[str, str] = {
    "python": ToolType.COMPUTATION,
    "python_tool": ToolType.COMPUTATION,
    "run_python": ToolType.COMPUTATION,
    "execute_python": ToolType.COMPUTATION,
    "code_interpreter": ToolType.COMPUTATION,
    "calculator": ToolType.COMPUTATION,
    "search": ToolType.RETRIEVAL,
    "visit": ToolType.RETRIEVAL,
    "google_search_tool": ToolType.RETRIEVAL,
    "visit_tool": ToolType.RETRIEVAL,
    "web_search": ToolType.RETRIEVAL,
    "fetch": ToolType.RETRIEVAL,
    "browse": ToolType.RETRIEVAL,
    "answer": ToolType.ANSWER,
    "final_answer": ToolType.ANSWER,
}
"""Tool name → type for interleaf's built-in tools and the paper's (``python_tool``,
``google_search_tool``, ``visit_tool``)."""

# Name fragments for tools the mapping does not list (MCP tools, user tools with prefixes).
_TYPE_HINTS: tuple[tuple[str, str], ...] = (
    ("python", ToolType.COMPUTATION),
    ("code", ToolType.COMPUTATION),
    ("calc", ToolType.COMPUTATION),
    ("search", ToolType.RETRIEVAL),
    ("visit", ToolType.RETRIEVAL),
    ("fetch", ToolType.RETRIEVAL),
    ("browse", ToolType.RETRIEVAL),
    ("retriev", ToolType.RETRIEVAL),
)


class PatternConfig(BaseModel):
    """Detector settings ([ours] thresholds are named here, not hidden in code)."""

    python_tools: list[str] = Field(
        default_factory=lambda: ["python", "python_tool", "run_python", "execute_python", "code_interpreter"]
    )
    """Tool names treated as a python interpreter (any name containing ``python`` is, too)."""
    tool_types: dict[str, str] = Field(default_factory=dict)
    """Extra tool name → type entries (a ``ToolType`` value or any label of your own); they override
    ``DEFAULT_TOOL_TYPES``. A tool in neither is typed by its name's fragments (``search``, ``python``…),
    and failing that is a type of its own."""
    format_error_types: list[str] = Field(
        default_factory=lambda: [
            "ToolArgumentError",
            "ToolFormatError",
            "ToolSchemaError",
            "ToolNotFound",
            "UnknownTool",
            "ValidationError",
            "JSONDecodeError",
        ]
    )
    """``ToolCallRecord.error_type`` values that mean the call itself was malformed."""
    confirmatory_needs_output: bool = False
    """[ours] Confirmatory Tool Usage also requires the python call's stdout to contain the answer
    (stricter than App. E, which asks only that the answer was stated before the call)."""
    long_response_min_tokens: int = 256
    """A tool result shorter than this (in tokens) is never 'long'."""
    long_response_min_share: float = 0.25
    """...and it must be at least this share of the final context."""

    def tool_type(self, name: str) -> str:
        """The type tool ``name`` counts as for tool mixing."""
        if name in self.tool_types:
            return self.tool_types[name]
        if name in DEFAULT_TOOL_TYPES:
            return DEFAULT_TOOL_TYPES[name]
        if name in self.python_tools:
            return ToolType.COMPUTATION
        lowered = name.lower()
        return next((kind for hint, kind in _TYPE_HINTS if hint in lowered), name)

    def is_python(self, name: str) -> bool:
        """Whether ``name`` is a python interpreter (the tool the paper's python rules are about)."""
        return name in self.python_tools or "python" in name.lower()


__all__ = ["DEFAULT_TOOL_TYPES", "PatternConfig", "ToolType"]
