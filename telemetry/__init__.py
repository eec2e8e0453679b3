"""interleaf.telemetry: what the reasoning cost (PTE), which patterns it fell into, traces and reports.

Telemetry reads trajectory records (``interleaf.telemetry.records``) and never calls back into the
runtime, agents or tools.
"""

from interleaf.telemetry.hardware_profile import (
    HARDWARE_PROFILES,
    REFERENCE_HARDWARE,
    HardwareProfile,
    find_hardware_profile,
    measure_cpu_profile,
)
from interleaf.telemetry.model_profile import MODEL_PROFILES, ModelProfile, find_model_profile
from interleaf.telemetry.patterns import (
    PAPER_PATTERNS,
    Pattern,
    PatternConfig,
    PatternFinding,
    PatternStats,
    TextSpan,
    detect_patterns,
    final_answer,
    pattern_stats,
)
from interleaf.telemetry.pte import (
    PTEBreakdown,
    PTEVariant,
    TurnArrays,
    gamma,
    pte,
    pte_breakdown,
    pte_table,
    step_weight_pte,
    trajectory_pte,
    turn_pte,
)
from interleaf.telemetry.report import FORMATS, ReportRow, build_report, plot_report, render_report
from interleaf.telemetry.summary import (
    REPORTED_VARIANTS,
    JobSummary,
    load_trajectories,
    summarize_job,
    trajectory_pte_values,
)
from interleaf.telemetry.tracing import (
    CONTENT_ENV,
    AgentSpan,
    EpisodeTracer,
    LLMSpan,
    ToolSpan,
    TracingSetup,
    configure_tracing,
    content_capture_enabled,
    spans_from_trajectory,
)

__all__ = [
    "CONTENT_ENV",
    "FORMATS",
    "HARDWARE_PROFILES",
    "MODEL_PROFILES",
    "PAPER_PATTERNS",
    "REFERENCE_HARDWARE",
    "REPORTED_VARIANTS",
    "AgentSpan",
    "EpisodeTracer",
    "HardwareProfile",
    "JobSummary",
    "LLMSpan",
    "ModelProfile",
    "PTEBreakdown",
    "PTEVariant",
    "Pattern",
    "PatternConfig",
    "PatternFinding",
    "PatternStats",
    "ReportRow",
    "TextSpan",
    "ToolSpan",
    "TracingSetup",
    "TurnArrays",
    "build_report",
    "configure_tracing",
    "content_capture_enabled",
    "detect_patterns",
    "final_answer",
    "find_hardware_profile",
    "find_model_profile",
    "gamma",
    "load_trajectories",
    "measure_cpu_profile",
    "pattern_stats",
    "plot_report",
    "pte",
    "pte_breakdown",
    "pte_table",
    "render_report",
    "spans_from_trajectory",
    "step_weight_pte",
    "summarize_job",
    "trajectory_pte",
    "trajectory_pte_values",
    "turn_pte",
]
