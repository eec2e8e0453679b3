"""The span handles an ``EpisodeTracer`` yields (episode, LLM call, tool call), and how a span is opened
and ended: attributes with a None value are left out, an exception marks the span failed, and a
re-emitted span ends at the time it recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from interleaf.telemetry.hardware_profile import HARDWARE_PROFILES, REFERENCE_HARDWARE
from interleaf.telemetry.model_profile import find_model_profile
from interleaf.telemetry.pte import PTEBreakdown, pte_breakdown
from interleaf.telemetry.records import TerminationReason, ToolCallRecord, Trajectory, Turn

if TYPE_CHECKING:
    from interleaf.telemetry.tracing.episode_tracer import EpisodeTracer

_NORMAL_END = {TerminationReason.ANSWERED, TerminationReason.MAX_TURNS, TerminationReason.MAX_TOKENS}


def set_present(span: Span, attrs: dict[str, Any]) -> None:
    """Set the attributes whose value is not None (OpenTelemetry rejects None values)."""
    span.set_attributes({k: v for k, v in attrs.items() if v is not None})


def mark_error(span: Span, error_type: str, description: str) -> None:
    """Mark ``span`` failed: ``error.type`` and an ERROR status with ``description``."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


@dataclass
class SpanHandle:
    """What every span handle holds: the span, whether contents are recorded, and when it ends."""

    span: Span
    capture_content: bool
    end_time: int | None = None
    """Explicit end, ns since the epoch (re-emitted spans); None = when the block exits."""

    @property
    def span_id(self) -> str | None:
        """Span id, 16 hex digits (None when tracing is off)."""
        ctx = self.span.get_span_context()
        return format(ctx.span_id, "016x") if ctx.is_valid else None


H = TypeVar("H", bound=SpanHandle)


@contextmanager
def open_span(
    tracer: Tracer,
    name: str,
    kind: SpanKind,
    attrs: dict[str, Any],
    start_time: int | None,
    handle: Callable[[Span], H],
    defer_end: Callable[[H, int], None] | None = None,
) -> Iterator[H]:
    """Start ``name`` as the current span with ``attrs`` and yield ``handle(span)``.

    An exception in the block is recorded on the span (ERROR status, ``error.type`` = its class) and
    propagates. The span ends at the handle's ``end_time`` when the block completes, else now.
    ``defer_end``: when the block completes normally, hand the handle and its end time (ns) over
    instead of ending the span (whoever receives it ends it later, at that time).
    """
    # Ended here rather than by the SDK so that re-emitted spans can carry their recorded end time.
    with tracer.start_as_current_span(
        name,
        kind=kind,
        start_time=start_time,
        record_exception=False,
        set_status_on_exception=False,
        end_on_exit=False,
    ) as span:
        set_present(span, attrs)
        end_time: int | None = None
        deferred = False
        try:
            h = handle(span)
            yield h
            end_time = h.end_time
            if defer_end is not None:
                defer_end(h, end_time if end_time is not None else time.time_ns())
                deferred = True
        except BaseException as exc:
            span.record_exception(exc)
            mark_error(span, type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if not deferred:
                span.end(end_time=end_time)


@dataclass
class AgentSpan(SpanHandle):
    """Handle on an episode span; ``trace_id`` goes into ``Trajectory.trace_id``.

    Its LLM-call spans stay open after their calls (ending at their recorded end time) until the
    episode is recorded: what happened at the pause after a call (``interleaf.retention.*``,
    ``interleaf.pause_s``) is known only then."""

    pending_llm: list[tuple[LLMSpan, int]] = field(default_factory=list)
    """LLM-call spans of this episode waiting for their pause figures, with their end time (ns)."""

    @property
    def trace_id(self) -> str | None:
        """Trace id, 32 hex digits (None when tracing is off)."""
        ctx = self.span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    def record(self, traj: Trajectory, pte: PTEBreakdown | None = None) -> None:
        """Outcome and totals of the finished episode (token counts stay on the child spans).

        ``pte``: default, the episode's PTE on the reference hardware (``H100-PCIe``) when its model
        has a shipped profile. Ends the pending LLM-call spans with their pause figures."""
        self.end_llm_spans(traj)
        if not self.span.is_recording():
            return  # tracing off: the PTE below costs ~0.1 ms per episode for a no-op span
        if pte is None:
            pte = default_pte(traj)
        set_present(
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
            set_present(
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
            mark_error(self.span, traj.termination.value, traj.error or traj.termination.value)
        if self.capture_content and traj.answer is not None:
            self.span.set_attribute("interleaf.answer", traj.answer)

    def end_llm_spans(self, traj: Trajectory | None = None) -> None:
        """End the pending LLM-call spans at their recorded end; with ``traj``, first set the figures
        of the pause that followed each call (matched by ``Turn.span_id``)."""
        turns = {t.span_id: t for t in traj.turns if t.span_id} if traj is not None else {}
        pending, self.pending_llm = self.pending_llm, []
        for llm, end_ns in pending:
            turn = turns.get(llm.span_id)
            if turn is not None:
                llm.record_retention(turn)
            llm.span.end(end_time=end_ns)


def default_pte(traj: Trajectory) -> PTEBreakdown | None:
    """The episode's PTE on the reference hardware for its model's shipped profile (None without one)."""
    profile = find_model_profile(traj.model) if traj.model else None
    if profile is None or not traj.turns:
        return None
    return pte_breakdown(traj, profile, HARDWARE_PROFILES[REFERENCE_HARDWARE])


def server_attributes(url: str) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of a base URL (``http://host:port``); empty when unparsable."""
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        port = parts.port
    except ValueError:
        return {}
    if not parts.hostname:
        return {}
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return {"server.address": parts.hostname, "server.port": port if port is not None else default}


@dataclass
class LLMSpan(SpanHandle):
    """Handle on one LLM call's span; its ``span_id`` goes into ``Turn.span_id``."""

    metric_attrs: dict[str, Any] = field(default_factory=dict)
    """Attributes of the call's GenAI metric points (operation, provider, model, server address)."""
    tracer: EpisodeTracer | None = None
    """Where the token-usage metric is recorded; None records none."""

    def set_prompt(self, messages: list[dict[str, Any]] | str) -> None:
        """Record the input as ``gen_ai.input.messages`` (only when content capture is on). A string
        is the text sent at this turn (interleaf sends each turn's delta: the rendered new messages)."""
        if not self.capture_content:
            return
        if isinstance(messages, str):
            messages = [{"role": "user", "parts": [{"type": "text", "content": messages}]}]
        self.span.set_attribute("gen_ai.input.messages", json.dumps(messages))

    def set_server(self, url: str) -> None:
        """``server.address`` / ``server.port`` of the server that answered, on the span and on the
        call's metric points (the duration point is recorded when the span's block exits)."""
        attrs = server_attributes(url)
        if not attrs:
            return
        set_present(self.span, attrs)
        # The same dict the tracer records the duration metric with: updated in place.
        self.metric_attrs["server.address"] = attrs["server.address"]

    def record(self, turn: Turn, *, pte: float | None = None) -> None:
        """Response attributes, usage and our figures from the finished turn; records the token metric."""
        if turn.server and "server.address" not in self.metric_attrs:
            self.set_server(turn.server)
        c = turn.cache
        input_tokens = c.prompt_tokens or None
        output_tokens = c.completion_tokens or len(turn.completion_ids)
        set_present(
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
        set_present(
            self.span,
            {
                "interleaf.retention.policy": turn.retention.policy,
                "interleaf.retention.decision": turn.retention.decision.value,
                "interleaf.pause_s": turn.timings.pause_s or None,
            },
        )


@dataclass
class ToolSpan(SpanHandle):
    """Handle on one tool call's span."""

    def record(self, call: ToolCallRecord) -> None:
        """Outcome (and, with content capture, the result) of the finished call."""
        if call.is_error:
            mark_error(self.span, call.error_type or "ToolError", call.result[:200])
        set_present(self.span, {"interleaf.tool.truncated": call.truncated or None})
        if self.capture_content:
            self.span.set_attribute("gen_ai.tool.call.result", call.result)


__all__ = [
    "AgentSpan",
    "LLMSpan",
    "SpanHandle",
    "ToolSpan",
    "default_pte",
    "mark_error",
    "open_span",
    "server_attributes",
    "set_present",
]
