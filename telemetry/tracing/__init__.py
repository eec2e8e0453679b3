"""OpenTelemetry tracing and metrics for episodes, following the GenAI semantic conventions.

Spans (DESIGN.md §7):

| span | kind | name |
|---|---|---|
| episode | INTERNAL | ``invoke_agent {agent}`` |
| LLM call | CLIENT | ``text_completion {model}`` (or ``chat {model}``) |
| tool call | INTERNAL | ``execute_tool {tool}`` |

Standard attributes go under ``gen_ai.*`` / ``error.type`` / ``server.*``; interleaf's own figures go
under ``interleaf.*`` and never under ``gen_ai.*``. Prompt, completion and tool contents are recorded
only when ``INTERLEAF_TRACE_CONTENT=1`` (or ``capture_content=True``). Metrics:
``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.

``configure_tracing()`` installs providers that export over OTLP/HTTP when the standard
``OTEL_EXPORTER_OTLP_*`` variables name an endpoint, and nothing otherwise.

Modules: ``configuration`` (``configure_tracing``, the content-capture switch), ``spans`` (the span
handles), ``episode_tracer`` (``EpisodeTracer``, which opens the spans live), ``replay``
(``spans_from_trajectory``, a recorded trajectory re-emitted after the fact).
"""

from __future__ import annotations

from interleaf.telemetry.tracing.configuration import (
    CONTENT_ENV,
    TracingSetup,
    check_otlp_protocol,
    configure_tracing,
    content_capture_enabled,
)
from interleaf.telemetry.tracing.episode_tracer import PROVIDER_NAME, EpisodeTracer
from interleaf.telemetry.tracing.replay import spans_from_trajectory
from interleaf.telemetry.tracing.spans import AgentSpan, LLMSpan, ToolSpan

__all__ = [
    "CONTENT_ENV",
    "PROVIDER_NAME",
    "AgentSpan",
    "EpisodeTracer",
    "LLMSpan",
    "ToolSpan",
    "TracingSetup",
    "check_otlp_protocol",
    "configure_tracing",
    "content_capture_enabled",
    "spans_from_trajectory",
]
