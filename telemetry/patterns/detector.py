"""Every rule over one trajectory, and which rules cannot apply to it."""

from __future__ import annotations

from interleaf.telemetry.patterns import cost_rules, paper_rules
from interleaf.telemetry.patterns.config import PatternConfig
from interleaf.telemetry.patterns.findings import Pattern, PatternFinding
from interleaf.telemetry.pte import TurnArrays
from interleaf.telemetry.records import Trajectory

CONSTRAINED_DECODING = "n/a (constrained decoding)"
"""Why Tool Format Collapse does not apply to a trajectory whose calls a schema grammar constrained."""


def detect_patterns(
    traj: Trajectory, *, config: PatternConfig | None = None, gamma: float | None = None
) -> list[PatternFinding]:
    """Every finding in one trajectory. ``gamma`` (``interleaf.telemetry.gamma``) lets the long-response
    detector price the decode cost a long result causes; without it that figure is 0."""
    cfg = config or PatternConfig()
    turns = TurnArrays.from_trajectories([traj])
    return [
        *paper_rules.confirmatory(traj, cfg),
        *paper_rules.tool_mixing(traj, cfg),
        *paper_rules.lack_of_priors(traj, cfg),
        *paper_rules.format_collapse(traj, cfg),
        *cost_rules.long_response(traj, turns, cfg, gamma),
        *cost_rules.recompute(traj, turns),
        *cost_rules.redundant(traj),
    ]


def not_applicable(traj: Trajectory) -> dict[Pattern, str]:
    """Patterns that cannot occur in ``traj``, with the reason. A grammar built from the tool schemas
    makes every call parse and fit its schema, so Tool Format Collapse is not measured there (a finding
    would be an engine bug, and is still reported as a finding)."""
    if traj.tool_calls_constrained:
        return {Pattern.TOOL_FORMAT_COLLAPSE: CONSTRAINED_DECODING}
    return {}


__all__ = ["CONSTRAINED_DECODING", "detect_patterns", "not_applicable"]
