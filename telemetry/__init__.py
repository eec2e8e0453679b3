"""interleaf.telemetry: what the reasoning cost (PTE), which patterns it fell into, traces and reports.

Telemetry reads trajectory records (``interleaf.telemetry.records``) and never calls back into the
runtime, agents or tools; nothing here talks to a server (the PTE-latency study's load generator is
``interleaf.pte_study``, which drives the engine through the runtime client).

Exports are loaded lazily (PEP 562): importing ``interleaf.telemetry.records`` stays cheap for the
runtime, while ``from interleaf.telemetry import gamma`` pulls in only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interleaf.lazy_exports import lazy_exports

# ``pte`` is both a submodule and a function: bind the function eagerly, or the import system's
# submodule attribute would shadow it once anything imports ``interleaf.telemetry.pte``.
from interleaf.telemetry.pte import (
    PTEBreakdown,
    PTEVariant,
    TurnArrays,
    gamma,
    pte,
    pte_breakdown,
    pte_table,
    served_model,
    step_weight_pte,
    trajectory_pte,
    turn_pte,
)

if TYPE_CHECKING:
    from interleaf.telemetry.hardware_profile import (
        DTYPE_BYTES,
        HARDWARE_PROFILES,
        REFERENCE_HARDWARE,
        HardwareProfile,
        find_hardware_profile,
        measure_cpu_profile,
    )
    from interleaf.telemetry.model_profile import (
        MODEL_PROFILES,
        ModelProfile,
        find_model_profile,
    )
    from interleaf.telemetry.patterns import (
        PAPER_PATTERNS,
        Pattern,
        PatternConfig,
        PatternFinding,
        PatternStats,
        TextSpan,
        ToolType,
        detect_patterns,
        final_answer,
        not_applicable,
        pattern_stats,
    )
    from interleaf.telemetry.pte_claims import CorrectnessCost, RankingStability, correctness_cost, ranking_stability
    from interleaf.telemetry.report import (
        FORMATS,
        ReportRow,
        build_report,
        hardware_ranking,
        plot_report,
        render_report,
    )
    from interleaf.telemetry.study import (
        Correlation,
        LatencyFit,
        StudyResult,
        pte_latency_study,
    )
    from interleaf.telemetry.summary import (
        REPORTED_VARIANTS,
        JobSummary,
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
    from interleaf.telemetry.trajectory_file import dump_trajectory, load_trajectories, load_trajectory

_EXPORTS: dict[str, str] = {
    "AgentSpan": "interleaf.telemetry.tracing",
    "CONTENT_ENV": "interleaf.telemetry.tracing",
    "Correlation": "interleaf.telemetry.study",
    "DTYPE_BYTES": "interleaf.telemetry.hardware_profile",
    "EpisodeTracer": "interleaf.telemetry.tracing",
    "FORMATS": "interleaf.telemetry.report",
    "HARDWARE_PROFILES": "interleaf.telemetry.hardware_profile",
    "HardwareProfile": "interleaf.telemetry.hardware_profile",
    "JobSummary": "interleaf.telemetry.summary",
    "LLMSpan": "interleaf.telemetry.tracing",
    "LatencyFit": "interleaf.telemetry.study",
    "MODEL_PROFILES": "interleaf.telemetry.model_profile",
    "ModelProfile": "interleaf.telemetry.model_profile",
    "PAPER_PATTERNS": "interleaf.telemetry.patterns",
    "Pattern": "interleaf.telemetry.patterns",
    "PatternConfig": "interleaf.telemetry.patterns",
    "PatternFinding": "interleaf.telemetry.patterns",
    "PatternStats": "interleaf.telemetry.patterns",
    "REFERENCE_HARDWARE": "interleaf.telemetry.hardware_profile",
    "REPORTED_VARIANTS": "interleaf.telemetry.summary",
    "ReportRow": "interleaf.telemetry.report",
    "StudyResult": "interleaf.telemetry.study",
    "TextSpan": "interleaf.telemetry.patterns",
    "ToolType": "interleaf.telemetry.patterns",
    "ToolSpan": "interleaf.telemetry.tracing",
    "TracingSetup": "interleaf.telemetry.tracing",
    "build_report": "interleaf.telemetry.report",
    "hardware_ranking": "interleaf.telemetry.report",
    "correctness_cost": "interleaf.telemetry.pte_claims",
    "ranking_stability": "interleaf.telemetry.pte_claims",
    "CorrectnessCost": "interleaf.telemetry.pte_claims",
    "RankingStability": "interleaf.telemetry.pte_claims",
    "configure_tracing": "interleaf.telemetry.tracing",
    "content_capture_enabled": "interleaf.telemetry.tracing",
    "detect_patterns": "interleaf.telemetry.patterns",
    "final_answer": "interleaf.telemetry.patterns",
    "find_hardware_profile": "interleaf.telemetry.hardware_profile",
    "find_model_profile": "interleaf.telemetry.model_profile",
    "dump_trajectory": "interleaf.telemetry.trajectory_file",
    "load_trajectories": "interleaf.telemetry.trajectory_file",
    "load_trajectory": "interleaf.telemetry.trajectory_file",
    "measure_cpu_profile": "interleaf.telemetry.hardware_profile",
    "not_applicable": "interleaf.telemetry.patterns",
    "pattern_stats": "interleaf.telemetry.patterns",
    "plot_report": "interleaf.telemetry.report",
    "pte_latency_study": "interleaf.telemetry.study",
    "render_report": "interleaf.telemetry.report",
    "spans_from_trajectory": "interleaf.telemetry.tracing",
    "summarize_job": "interleaf.telemetry.summary",
    "trajectory_pte_values": "interleaf.telemetry.summary",
}


# The literal ``__all__`` below (rather than lazy_exports' own) keeps the TYPE_CHECKING imports above
# visible to linters and IDEs as re-exports.
__getattr__, __dir__, _ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CONTENT_ENV",
    "DTYPE_BYTES",
    "FORMATS",
    "HARDWARE_PROFILES",
    "MODEL_PROFILES",
    "PAPER_PATTERNS",
    "REFERENCE_HARDWARE",
    "REPORTED_VARIANTS",
    "AgentSpan",
    "CorrectnessCost",
    "Correlation",
    "EpisodeTracer",
    "HardwareProfile",
    "JobSummary",
    "LLMSpan",
    "LatencyFit",
    "ModelProfile",
    "PTEBreakdown",
    "PTEVariant",
    "Pattern",
    "PatternConfig",
    "PatternFinding",
    "PatternStats",
    "RankingStability",
    "ReportRow",
    "StudyResult",
    "TextSpan",
    "ToolSpan",
    "ToolType",
    "TracingSetup",
    "TurnArrays",
    "build_report",
    "configure_tracing",
    "content_capture_enabled",
    "correctness_cost",
    "detect_patterns",
    "dump_trajectory",
    "final_answer",
    "find_hardware_profile",
    "find_model_profile",
    "gamma",
    "hardware_ranking",
    "load_trajectories",
    "load_trajectory",
    "measure_cpu_profile",
    "not_applicable",
    "pattern_stats",
    "plot_report",
    "pte",
    "pte_breakdown",
    "pte_latency_study",
    "pte_table",
    "ranking_stability",
    "render_report",
    "served_model",
    "spans_from_trajectory",
    "step_weight_pte",
    "summarize_job",
    "trajectory_pte",
    "trajectory_pte_values",
    "turn_pte",
]
