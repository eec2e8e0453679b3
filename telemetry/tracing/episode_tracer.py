"""``EpisodeTracer``: opens the episode, LLM-call and tool-call spans with their GenAI attributes, and
records the two GenAI client metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.trace import SpanKind, TracerProvider

from interleaf.telemetry.records import ToolCallRecord, Trajectory
from interleaf.telemetry.tracing.configuration import content_capture_enabled
from interleaf.telemetry.tracing.spans import AgentSpan, LLMSpan, ToolSpan, open_span

PROVIDER_NAME = "sglang"
"""``gen_ai.provider.name`` of every LLM span (the embedded engine speaks SGLang's protocol)."""
INSTRUMENTATION_NAME = "interleaf"

# Bucket boundaries the GenAI semantic conventions recommend for the two client metrics.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

_NS = 1_000_000_000


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
        self._episodes: dict[str, AgentSpan] = {}
        """Open episode spans by conversation id: their LLM-call spans wait there for the pause figures."""

    def record_tokens(self, attrs: dict[str, Any], input_tokens: int | None, output_tokens: int | None) -> None:
        """Record ``gen_ai.client.token.usage`` for one call: a point per known count, typed input/output."""
        if input_tokens is not None:
            self._token_usage.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            self._token_usage.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})

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
        with open_span(
            self._tracer,
            f"invoke_agent {agent}",
            SpanKind.INTERNAL,
            attrs,
            start_time,
            lambda s: AgentSpan(s, self.capture_content),
        ) as handle:
            self._episodes[conversation_id] = handle
            try:
                yield handle
            finally:
                # Children end before their parent, also when the episode failed before record().
                handle.end_llm_spans()
                if self._episodes.get(conversation_id) is handle:
                    del self._episodes[conversation_id]

    @contextmanager
    def episode_span(self, traj: Trajectory, *, start_time: int | None = None) -> Iterator[AgentSpan]:
        """``agent_span`` for ``traj``: its agent, id (the conversation, and the agent instance's
        ``gen_ai.agent.id``), model, retention policy, job, episode, task and suite. The live episode
        and the after-the-fact replay both open it here."""
        with self.agent_span(
            traj.agent or "agent",
            conversation_id=traj.id,
            agent_id=traj.id,
            model=traj.model or None,
            retention_policy=traj.retention_policy,
            job_id=traj.job_id,
            episode=traj.episode,
            task_id=traj.task_id,
            suite=traj.suite,
            start_time=start_time,
        ) as span:
            yield span

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
        (the span's wall time, or ``duration_s`` when given).

        ``server_address`` / ``server_port``: the server, when known before the call; else
        ``LLMSpan.record(turn)`` sets them from ``Turn.server``. Inside the episode span of
        ``conversation_id`` the span ends when the episode is recorded (at its own end time), so that
        it carries the decision taken at the pause after the call."""
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
        episode = self._episodes.get(conversation_id) if conversation_id is not None else None
        t0 = time.perf_counter()
        error: str | None = None
        try:
            with open_span(
                self._tracer,
                f"{operation} {model}",
                SpanKind.CLIENT,
                attrs,
                start_time,
                lambda s: LLMSpan(s, self.capture_content, metric_attrs=metric_attrs, tracer=self),
                defer_end=(lambda h, end_ns: episode.pending_llm.append((h, end_ns))) if episode else None,
            ) as handle:
                yield handle
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
        with open_span(
            self._tracer,
            f"execute_tool {name}",
            SpanKind.INTERNAL,
            attrs,
            start_time,
            lambda s: ToolSpan(s, self.capture_content),
        ) as handle:
            yield handle

    def emit_tool_call(self, call: ToolCallRecord, start_s: float) -> float:
        """The span of a finished tool call, after the fact: from ``start_s`` (seconds since the epoch)
        for its measured ``duration_s``; returns its end. An unparsed call (no name) is
        ``execute_tool unparsed``. The live episode and the replay both emit tool spans here."""
        end_s = start_s + call.duration_s
        with self.tool_span(
            call.name or "unparsed", call_id=call.id, arguments=call.arguments, start_time=int(start_s * _NS)
        ) as span:
            span.record(call)
            span.end_time = int(end_s * _NS)
        return end_s


__all__ = ["PROVIDER_NAME", "EpisodeTracer"]
