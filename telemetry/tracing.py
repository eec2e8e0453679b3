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
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from interleaf.telemetry.pte import PTEBreakdown
from interleaf.telemetry.records import TerminationReason, ToolCallRecord, Trajectory, Turn

CONTENT_ENV = "INTERLEAF_TRACE_CONTENT"
"""Set to 1 to record prompts, completions, tool arguments and results in spans."""
PROVIDER_NAME = "sglang"
"""``gen_ai.provider.name`` of every LLM span (the embedded engine speaks SGLang's protocol)."""
INSTRUMENTATION_NAME = "interleaf"

# Bucket boundaries the GenAI semantic conventions recommend for the two client metrics.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

_NORMAL_END = {TerminationReason.ANSWERED, TerminationReason.MAX_TURNS, TerminationReason.MAX_TOKENS}


def content_capture_enabled() -> bool:
    """True when ``INTERLEAF_TRACE_CONTENT`` is 1/true/yes."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class TracingSetup:
    """What ``configure_tracing`` installed."""

    tracer_provider: SdkTracerProvider
    meter_provider: SdkMeterProvider
    exporting: bool
    """True when spans leave the process (an OTLP endpoint or an explicit exporter was given)."""

    def shutdown(self) -> None:
        """Flush and stop exporters (call at process end)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _otlp_endpoint(signal: str) -> str | None:
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def configure_tracing(
    *,
    service_name: str | None = None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    set_global: bool = True,
) -> TracingSetup:
    """Build tracer and meter providers from the standard OpenTelemetry environment.

    - ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``: the resource (service name defaults to
      ``interleaf``).
    - ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`` (plus
      ``..._HEADERS``, ``..._TIMEOUT``, ``..._COMPRESSION``, read by the exporter itself): OTLP/HTTP
      protobuf export. Unset: no exporter (spans are still created for in-process readers).
    - ``OTEL_TRACES_EXPORTER=none`` / ``OTEL_METRICS_EXPORTER=none`` switch a signal off.

    - ``OTEL_SDK_DISABLED=true``: nothing is installed globally (spans become no-ops).
    - ``OTEL_EXPORTER_OTLP_PROTOCOL`` other than ``http/protobuf`` is refused (only that exporter ships).

    ``span_exporter`` / ``metric_reader`` add explicit ones (tests). ``set_global`` installs the
    providers as OpenTelemetry's globals; OpenTelemetry allows that once per process, so a second
    global call returns the first setup unchanged.
    """
    global _GLOBAL_SETUP
    if set_global and _GLOBAL_SETUP is not None:
        return _GLOBAL_SETUP
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: interleaf ships the OTLP/HTTP protobuf "
            "exporter only; set it to http/protobuf (or unset it) and point the endpoint at the collector's HTTP port"
        )
    attrs = {"service.name": service_name} if service_name else {}
    if not service_name and not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = "interleaf"
    resource = Resource.create(attrs)
    tracer_provider = SdkTracerProvider(resource=resource)
    exporting = False
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        exporting = True
    if _otlp_endpoint("TRACES") and os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() != "none":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        exporting = True
    readers: list[MetricReader] = [metric_reader] if metric_reader is not None else []
    if _otlp_endpoint("METRICS") and os.environ.get("OTEL_METRICS_EXPORTER", "otlp").lower() != "none":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers)
    setup = TracingSetup(tracer_provider=tracer_provider, meter_provider=meter_provider, exporting=exporting)
    if set_global and os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _GLOBAL_SETUP = setup
    return setup


_GLOBAL_SETUP: TracingSetup | None = None


def _hex_trace(span: Span) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _hex_span(span: Span) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None


def _set(span: Span, attrs: dict[str, Any]) -> None:
    span.set_attributes({k: v for k, v in attrs.items() if v is not None})


@dataclass
class AgentSpan:
    """Handle on an episode span; ``trace_id`` goes into ``Trajectory.trace_id``."""

    span: Span
    capture_content: bool
    end_time: int | None = None
    """Explicit end, ns since the epoch (re-emitted spans); None = when the block exits."""

    @property
    def trace_id(self) -> str | None:
        """Trace id, 32 hex digits (None when tracing is off)."""
        return _hex_trace(self.span)

    @property
    def span_id(self) -> str | None:
        """Span id, 16 hex digits."""
        return _hex_span(self.span)

    def record(self, traj: Trajectory, pte: PTEBreakdown | None = None) -> None:
        """Outcome and totals of the finished episode (token counts stay on the child spans)."""
        _set(
            self.span,
            {
                "interleaf.termination": traj.termination.value,
                "interleaf.turns": len(traj.turns),
                "interleaf.tool_calls": traj.tool_call_count,
                "interleaf.correct": traj.correct,
                "interleaf.score": traj.score,
            },
        )
        if pte is not None:
            _set(
                self.span,
                {
                    "interleaf.pte.evict_all": pte.evict_all,
                    "interleaf.pte.measured": pte.measured,
                    "interleaf.pte.perfect_reuse": pte.perfect_reuse,
                    "interleaf.pte.pte_plus": pte.pte_plus,
                    "interleaf.pte.gamma": pte.gamma,
                    "interleaf.pte.hardware": pte.hardware,
                },
            )
        if traj.termination not in _NORMAL_END:
            self.span.set_attribute("error.type", traj.termination.value)
            self.span.set_status(Status(StatusCode.ERROR, traj.error or traj.termination.value))
        if self.capture_content and traj.answer is not None:
            self.span.set_attribute("interleaf.answer", traj.answer)


@dataclass
class LLMSpan:
    """Handle on one LLM call's span."""

    span: Span
    capture_content: bool
    end_time: int | None = None
    """Explicit end, ns since the epoch (re-emitted spans); None = when the block exits."""
    metric_attrs: dict[str, Any] = field(default_factory=dict)
    tracer: EpisodeTracer | None = None

    @property
    def span_id(self) -> str | None:
        """Span id, 16 hex digits (goes into ``Turn.span_id``)."""
        return _hex_span(self.span)

    def set_prompt(self, messages: list[dict[str, Any]] | str) -> None:
        """Record the input as ``gen_ai.input.messages`` (only when content capture is on)."""
        if not self.capture_content:
            return
        if isinstance(messages, str):
            messages = [{"role": "user", "parts": [{"type": "text", "content": messages}]}]
        self.span.set_attribute("gen_ai.input.messages", json.dumps(messages))

    def record(self, turn: Turn, *, pte: float | None = None) -> None:
        """Response attributes, usage and our figures from the finished turn; records the token metric."""
        c = turn.cache
        input_tokens = c.prompt_tokens or None
        output_tokens = c.completion_tokens or len(turn.completion_ids)
        _set(
            self.span,
            {
                "gen_ai.response.id": turn.request_id or None,
                "gen_ai.response.finish_reasons": [turn.finish_reason] if turn.finish_reason else None,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cache_read.input_tokens": c.cached_tokens,
                "interleaf.turn": turn.index,
                "interleaf.recomputed_tokens": c.recomputed_tokens,
                "interleaf.batch_size": c.batch_size,
                "interleaf.ttft_s": turn.timings.ttft_s or None,
                "interleaf.queue_s": turn.timings.queue_s or None,
                "interleaf.pte": pte,
            },
        )
        if turn.format_error:
            self.span.set_attribute("interleaf.format_error", turn.format_error)
        for event in turn.retention_events:  # KV events before this call: span events, in order
            self.span.add_event(
                f"interleaf.retention.{event.decision.value}",
                {"interleaf.retention.reason": event.reason, "interleaf.admission.wait_s": event.wait_s},
            )
        if self.capture_content:
            msg = [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": turn.text}],
                    "finish_reason": turn.finish_reason or "stop",
                }
            ]
            self.span.set_attribute("gen_ai.output.messages", json.dumps(msg))
        if self.tracer is not None:
            self.tracer.record_tokens(self.metric_attrs, input_tokens, output_tokens)

    def record_retention(self, turn: Turn) -> None:
        """The retention decision taken at the pause after this turn (and the pause length)."""
        _set(
            self.span,
            {
                "interleaf.retention.policy": turn.retention.policy,
                "interleaf.retention.decision": turn.retention.decision.value,
                "interleaf.pause_s": turn.timings.pause_s or None,
            },
        )


@dataclass
class ToolSpan:
    """Handle on one tool call's span."""

    span: Span
    capture_content: bool
    end_time: int | None = None
    """Explicit end, ns since the epoch (re-emitted spans); None = when the block exits."""

    @property
    def span_id(self) -> str | None:
        """Span id, 16 hex digits."""
        return _hex_span(self.span)

    def record(self, call: ToolCallRecord) -> None:
        """Outcome (and, with content capture, the result) of the finished call."""
        if call.is_error:
            self.span.set_attribute("error.type", call.error_type or "ToolError")
            self.span.set_status(Status(StatusCode.ERROR, call.result[:200]))
        _set(self.span, {"interleaf.tool.truncated": call.truncated or None})
        if self.capture_content:
            self.span.set_attribute("gen_ai.tool.call.result", call.result)


class EpisodeTracer:
    """Creates the episode / LLM / tool spans and the GenAI metrics.

    With no providers given it uses OpenTelemetry's global ones, which do nothing until
    ``configure_tracing()`` (or the application) installs real providers.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        capture_content: bool | None = None,
        provider_name: str = PROVIDER_NAME,
    ) -> None:
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(INSTRUMENTATION_NAME)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(INSTRUMENTATION_NAME)
        self._token_usage: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.capture_content = content_capture_enabled() if capture_content is None else capture_content
        self.provider_name = provider_name

    def record_tokens(self, attrs: dict[str, Any], input_tokens: int | None, output_tokens: int | None) -> None:
        if input_tokens is not None:
            self._token_usage.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            self._token_usage.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})

    @contextmanager
    def _span(
        self, name: str, kind: SpanKind, attrs: dict[str, Any], start_time: int | None, end: list[int | None]
    ) -> Iterator[Span]:
        # Ended here rather than by the SDK so that re-emitted spans can carry their recorded end time.
        with self._tracer.start_as_current_span(
            name,
            kind=kind,
            start_time=start_time,
            record_exception=False,
            set_status_on_exception=False,
            end_on_exit=False,
        ) as span:
            _set(span, attrs)
            try:
                yield span
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            finally:
                span.end(end_time=end[0])

    @contextmanager
    def agent_span(
        self,
        agent: str,
        *,
        conversation_id: str,
        agent_id: str | None = None,
        model: str | None = None,
        retention_policy: str | None = None,
        job_id: str | None = None,
        episode: int | None = None,
        task_id: str | None = None,
        suite: str | None = None,
        start_time: int | None = None,
    ) -> Iterator[AgentSpan]:
        """The episode span, ``invoke_agent {agent}``; LLM and tool spans opened inside nest under it."""
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": self.provider_name,
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": agent_id,
            "gen_ai.conversation.id": conversation_id,
            "gen_ai.request.model": model,
            "interleaf.retention.policy": retention_policy,
            "interleaf.job.id": job_id or None,
            "interleaf.episode": episode,
            "interleaf.task.id": task_id or None,
            "interleaf.suite": suite or None,
        }
        end: list[int | None] = [None]
        with self._span(f"invoke_agent {agent}", SpanKind.INTERNAL, attrs, start_time, end) as span:
            handle = AgentSpan(span, self.capture_content)
            yield handle
            end[0] = handle.end_time

    @contextmanager
    def llm_span(
        self,
        model: str,
        *,
        operation: str = "text_completion",
        conversation_id: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
        start_time: int | None = None,
        duration_s: float | None = None,
    ) -> Iterator[LLMSpan]:
        """One LLM call, ``{operation} {model}`` (CLIENT); records ``gen_ai.client.operation.duration``
        (the span's wall time, or ``duration_s`` when given)."""
        if operation not in ("text_completion", "chat", "generate_content"):
            raise ValueError(f"operation={operation!r} is not a GenAI LLM operation; use text_completion or chat")
        metric_attrs = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self.provider_name,
            "gen_ai.request.model": model,
            **({"server.address": server_address} if server_address else {}),
        }
        attrs = {
            **metric_attrs,
            "gen_ai.conversation.id": conversation_id,
            "gen_ai.request.temperature": temperature,
            "gen_ai.request.top_p": top_p,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.request.seed": seed,
            "server.port": server_port,
        }
        t0 = time.perf_counter()
        error: str | None = None
        try:
            end: list[int | None] = [None]
            with self._span(f"{operation} {model}", SpanKind.CLIENT, attrs, start_time, end) as span:
                handle = LLMSpan(span, self.capture_content, metric_attrs=metric_attrs, tracer=self)
                yield handle
                end[0] = handle.end_time
        except BaseException as exc:
            error = type(exc).__qualname__
            raise
        finally:
            elapsed = duration_s if duration_s is not None else time.perf_counter() - t0
            self._duration.record(elapsed, {**metric_attrs, **({"error.type": error} if error else {})})

    @contextmanager
    def tool_span(
        self,
        name: str,
        *,
        call_id: str,
        tool_type: str = "function",
        arguments: dict[str, Any] | None = None,
        start_time: int | None = None,
    ) -> Iterator[ToolSpan]:
        """One tool call, ``execute_tool {name}`` (INTERNAL); arguments recorded only with content capture."""
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": tool_type,
        }
        if self.capture_content and arguments is not None:
            attrs["gen_ai.tool.call.arguments"] = json.dumps(arguments)
        end: list[int | None] = [None]
        with self._span(f"execute_tool {name}", SpanKind.INTERNAL, attrs, start_time, end) as span:
            handle = ToolSpan(span, self.capture_content)
            yield handle
            end[0] = handle.end_time


def spans_from_trajectory(
    traj: Trajectory,
    tracer: EpisodeTracer | None = None,
    *,
    pte: PTEBreakdown | None = None,
    turn_pte: list[float] | None = None,
) -> str | None:
    """Re-emit a stored trajectory as a trace after the fact; returns the new trace id (hex).

    Span times are rebuilt from the record: the episode starts at ``started_at`` (now when unset);
    each LLM call lasts ``timings.e2e_s`` (else ``ttft_s + decode_s``), its tool calls follow it
    back to back for their ``duration_s``, and the next call starts ``pause_s`` (at least the tool
    time) after the previous one ended. Exact for what was measured, approximate for gaps.
    """
    tracer = tracer or EpisodeTracer()
    ns = 1_000_000_000
    t = traj.started_at or time.time()
    with tracer.agent_span(
        traj.agent or "agent",
        conversation_id=traj.id,
        model=traj.model or None,
        retention_policy=traj.retention_policy,
        job_id=traj.job_id,
        episode=traj.episode,
        task_id=traj.task_id,
        suite=traj.suite,
        start_time=int(t * ns),
    ) as agent:
        for turn in traj.turns:
            e2e = turn.timings.e2e_s or (turn.timings.ttft_s + turn.timings.decode_s)
            with tracer.llm_span(
                traj.model or "model",
                conversation_id=traj.id,
                server_address=turn.server or None,
                start_time=int(t * ns),
                duration_s=e2e,
            ) as llm:
                llm.record(turn, pte=turn_pte[turn.index] if turn_pte else None)
                llm.record_retention(turn)
                llm.end_time = int((t + e2e) * ns)
            tool_t = t + e2e
            for call in turn.tool_calls:
                with tracer.tool_span(
                    call.name, call_id=call.id, arguments=call.arguments, start_time=int(tool_t * ns)
                ) as tool:
                    tool.record(call)
                    tool_t += call.duration_s
                    tool.end_time = int(tool_t * ns)
            t = max(t + e2e + turn.timings.pause_s, tool_t)
        agent.record(traj, pte)
        agent.end_time = int(max(t, traj.ended_at or t) * ns)
        return agent.trace_id


__all__ = [
    "CONTENT_ENV",
    "PROVIDER_NAME",
    "AgentSpan",
    "EpisodeTracer",
    "LLMSpan",
    "ToolSpan",
    "TracingSetup",
    "configure_tracing",
    "content_capture_enabled",
    "spans_from_trajectory",
]
