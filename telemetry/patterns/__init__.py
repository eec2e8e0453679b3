"""Inefficiency patterns in tool-integrated reasoning, each with evidence.

The four rules of arXiv 2604.05404 App. E (../shared/PAPERS.md §B) and three of ours:

| pattern | rule |
|---|---|
| confirmatory_tool_usage [paper] | answer (whole token/number, not "Step 2") stated before a python call is invoked |
| tool_mixing [paper] | more than one tool *type* (``ToolType``; ``PatternConfig.tool_types``) called |
| lack_of_tool_priors [paper] | a python call prints nothing or does not compile (not: warnings, runtime errors) |
| tool_format_collapse [paper] | call unparseable, off-schema or names an unoffered tool (n/a when constrained) |
| long_tool_response [ours] | one tool result takes a large share of the context it is carried in |
| recompute_after_pause [ours] | a turn re-prefilled tokens an earlier call computed (KV lost in a pause) |
| redundant_tool_call [ours] | the same tool is called with identical arguments more than once |

Job level (``pattern_stats``): frequency over the trajectories a rule applies to, and the cost
multiplier (mean PTE with ÷ pattern-free) computed within each (model, suite) setting.
"""

from __future__ import annotations

from interleaf.telemetry.patterns.answers import final_answer
from interleaf.telemetry.patterns.config import DEFAULT_TOOL_TYPES, PatternConfig, ToolType
from interleaf.telemetry.patterns.detector import CONSTRAINED_DECODING, detect_patterns, not_applicable
from interleaf.telemetry.patterns.findings import PAPER_PATTERNS, Pattern, PatternFinding, TextSpan
from interleaf.telemetry.patterns.stats import GroupCost, PatternStats, Setting, pattern_stats

__all__ = [
    "CONSTRAINED_DECODING",
    "DEFAULT_TOOL_TYPES",
    "PAPER_PATTERNS",
    "GroupCost",
    "Pattern",
    "PatternConfig",
    "PatternFinding",
    "PatternStats",
    "Setting",
    "TextSpan",
    "ToolType",
    "detect_patterns",
    "final_answer",
    "not_applicable",
    "pattern_stats",
]
