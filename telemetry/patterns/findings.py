"""What a detector reports: the pattern names and a finding with its text evidence."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Pattern(StrEnum):
    """The inefficiency patterns interleaf detects."""

    CONFIRMATORY_TOOL_USAGE = "confirmatory_tool_usage"
    """[paper] Answer already in the reasoning before the python tool is called (to verify it)."""
    TOOL_MIXING = "tool_mixing"
    """[paper] More than one distinct tool *type* used (e.g. retrieval and computation)."""
    LACK_OF_TOOL_PRIORS = "lack_of_tool_priors"
    """[paper] Python call with empty output (missing print) or a syntax error."""
    TOOL_FORMAT_COLLAPSE = "tool_format_collapse"
    """[paper] Tool call JSON parse error or schema violation."""
    LONG_TOOL_RESPONSE = "long_tool_response"
    """[ours] A tool result inflates the context every later turn decodes against."""
    RECOMPUTE_AFTER_PAUSE = "recompute_after_pause"
    """[ours] Tokens recomputed after a pause because their KV was evicted or released."""
    REDUNDANT_TOOL_CALL = "redundant_tool_call"
    """[ours] Identical tool call (same name, same arguments) repeated."""


PAPER_PATTERNS = (
    Pattern.CONFIRMATORY_TOOL_USAGE,
    Pattern.TOOL_MIXING,
    Pattern.LACK_OF_TOOL_PRIORS,
    Pattern.TOOL_FORMAT_COLLAPSE,
)


class TextSpan(BaseModel):
    """A piece of a trajectory that is evidence for a finding."""

    turn: int
    """Turn index."""
    source: str
    """Where the span lies: ``text`` (completion text), ``tool_result``, ``tool_raw`` (the call's raw
    text) or ``format_error``."""
    call_id: str | None = None
    """Tool call id for ``tool_result`` / ``tool_raw`` spans."""
    start: int
    """Start character offset in the source string."""
    end: int
    """End character offset (exclusive)."""
    excerpt: str
    """The spanned text (cut to 200 characters)."""


class PatternFinding(BaseModel):
    """One occurrence of a pattern in one trajectory."""

    pattern: Pattern
    """Which pattern."""
    trajectory_id: str
    """Trajectory the finding is about."""
    turns: list[int]
    """Turn indices involved, ascending."""
    spans: list[TextSpan] = Field(default_factory=list)
    """Text evidence."""
    detail: str = ""
    """What was seen, in words."""
    figures: dict[str, float] = Field(default_factory=dict)
    """Numbers behind the finding (e.g. ``tool_tokens``, ``share``, ``recomputed_tokens``, ``extra_pte``)."""


def excerpt(s: str) -> str:
    """``s`` cut to the 200 characters a span keeps."""
    return s if len(s) <= 200 else s[:197] + "..."


def whole_span(turn: int, source: str, text: str, call_id: str | None = None) -> TextSpan:
    """Evidence that is a whole string (a tool result, a call's raw text, a format error)."""
    return TextSpan(turn=turn, source=source, call_id=call_id, start=0, end=len(text), excerpt=excerpt(text))


__all__ = ["PAPER_PATTERNS", "Pattern", "PatternFinding", "TextSpan", "excerpt", "whole_span"]
