"""Tracing: GenAI semconv spans and metrics checked with the SDK's in-memory exporter and reader,
and received over real HTTP by an OTLP protobuf receiver running in another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from interleaf.runtime.child_process import free_port
from interleaf.telemetry import (
    MODEL_PROFILES,
    EpisodeTracer,
    configure_tracing,
    pte_breakdown,
    spans_from_trajectory,
)
from interleaf.telemetry.hardware_profile import HARDWARE_PROFILES
from interleaf.telemetry.records import TerminationReason, TurnTimings
from tests.telemetry import telemetry_fixtures as fx
from tests.telemetry.telemetry_fixtures import run_episode


@pytest.fixture
def otel():
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield tp, mp, exporter, reader
    tp.shutdown()
    mp.shutdown()


def by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def histogram_points(reader) -> dict[str, list]:
    out: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_spans_follow_genai_semconv(otel) -> None:
    tp, mp, exporter, _ = otel
    agent = run_episode(EpisodeTracer(tp, mp, capture_content=False))
    spans = by_name(exporter)
    assert set(spans) == {"invoke_agent arith-agent", "text_completion SmolLM2-135M-Instruct", "execute_tool python"}
    a, llm, tool = (
        spans["invoke_agent arith-agent"],
        spans["text_completion SmolLM2-135M-Instruct"],
        spans["execute_tool python"],
    )
    assert (a.kind, llm.kind, tool.kind) == (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.INTERNAL)
    assert llm.parent.span_id == a.context.span_id and tool.parent.span_id == a.context.span_id
    assert agent.trace_id == format(a.context.trace_id, "032x")
    assert a.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert a.attributes["gen_ai.agent.name"] == "arith-agent"
    assert a.attributes["gen_ai.agent.id"] == "agent-7"
    assert a.attributes["gen_ai.conversation.id"] == "traj-1"
    assert a.attributes["interleaf.retention.policy"] == "session"
    assert not any(k.startswith("gen_ai.usage") for k in a.attributes)  # children carry token counts
    expected = {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "sglang",
        "gen_ai.request.model": "SmolLM2-135M-Instruct",
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.seed": 3,
        "gen_ai.response.id": "req-0",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "server.address": "127.0.0.1",
        "server.port": 30000,
        "interleaf.pte": 31.5,
        "interleaf.batch_size": 2.0,
    }
    assert {k: llm.attributes.get(k) for k in expected} == expected
    assert tool.attributes["gen_ai.tool.name"] == "python"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_0_0"
    assert tool.attributes["gen_ai.tool.type"] == "function"
    # Content is off by default.
    for s in (a, llm, tool):
        assert not {
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
        } & set(s.attributes)
    # Nothing of ours under gen_ai.*.
    assert all(
        k.startswith(("gen_ai.", "server.", "error.", "interleaf.")) for s in spans.values() for k in s.attributes
    )


def test_content_only_when_opted_in(otel, monkeypatch) -> None:
    tp, mp, exporter, _ = otel
    monkeypatch.setenv("INTERLEAF_TRACE_CONTENT", "1")
    run_episode(EpisodeTracer(tp, mp))
    spans = by_name(exporter)
    llm = spans["text_completion SmolLM2-135M-Instruct"]
    assert "What is 6*7?" in llm.attributes["gen_ai.input.messages"]
    assert "Let me compute." in llm.attributes["gen_ai.output.messages"]
    tool = spans["execute_tool python"]
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"code": "print(6*7)"}'
    assert tool.attributes["gen_ai.tool.call.result"] == "42\n"


def test_metrics_token_usage_and_duration(otel) -> None:
    tp, mp, _, reader = otel
    run_episode(EpisodeTracer(tp, mp))
    points = histogram_points(reader)
    usage = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert (usage["input"].sum, usage["output"].sum) == (30, 7)
    assert usage["input"].attributes["gen_ai.operation.name"] == "text_completion"
    assert usage["input"].attributes["gen_ai.provider.name"] == "sglang"
    (dur,) = points["gen_ai.client.operation.duration"]
    assert dur.count == 1 and dur.attributes["gen_ai.request.model"] == "SmolLM2-135M-Instruct"


def test_exception_sets_error_type(otel) -> None:
    tp, mp, exporter, reader = otel
    tracer = EpisodeTracer(tp, mp)
    with pytest.raises(TimeoutError), tracer.agent_span("a", conversation_id="c"), tracer.llm_span("m"):
        raise TimeoutError("backend took too long")
    spans = by_name(exporter)
    for name in ("text_completion m", "invoke_agent a"):
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].attributes["error.type"] == "TimeoutError"
    (dur,) = histogram_points(reader)["gen_ai.client.operation.duration"]
    assert dur.attributes["error.type"] == "TimeoutError"


def test_failed_tool_and_abnormal_episode(otel) -> None:
    tp, mp, exporter, _ = otel
    traj = fx.malformed_call()
    traj.termination = TerminationReason.BACKEND_ERROR
    traj.error = "engine unreachable"
    spans_from_trajectory(traj, EpisodeTracer(tp, mp))
    finished = exporter.get_finished_spans()
    agent = next(s for s in finished if s.name.startswith("invoke_agent"))
    assert agent.attributes["error.type"] == "backend_error" and agent.status.status_code == StatusCode.ERROR
    tools = [s for s in finished if s.name == "execute_tool python"]
    assert [s.attributes.get("error.type") for s in tools] == ["ToolArgumentError", "ToolArgumentError"]
    llm0 = next(s for s in finished if s.attributes.get("interleaf.turn") == 0)
    assert llm0.attributes["interleaf.format_error"].startswith("Expecting value")


def test_replay_and_live_name_an_unparsed_call_alike(otel) -> None:
    """The live episode and the replay emit tool spans through one helper: same name, times, outcome."""
    tp, mp, exporter, _ = otel
    tracer = EpisodeTracer(tp, mp)
    unparsed = fx.call(0, 0, "", None, "could not be parsed", is_error=True, error_type="ToolFormatError", raw="?")
    unparsed.duration_s = 0.5
    assert tracer.emit_tool_call(unparsed, 100.0) == 100.5  # the live path (agents.graph)
    traj = fx.traj("unparsed", [fx.turn(0, "<tool_call>?", [unparsed])])
    traj.started_at = 100.0
    spans_from_trajectory(traj, tracer)
    live, replayed = (s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool"))
    assert live.name == replayed.name == "execute_tool unparsed"
    assert live.attributes == replayed.attributes
    assert live.attributes["error.type"] == "ToolFormatError" and live.status.status_code == StatusCode.ERROR
    assert (live.start_time, live.end_time) == (100 * 1_000_000_000, int(100.5 * 1_000_000_000))


def test_spans_from_trajectory_rebuilds_times_and_figures(otel) -> None:
    tp, mp, exporter, _ = otel
    traj = fx.recompute()
    traj.agent, traj.started_at, traj.ended_at = "arith", 1000.0, 1010.0
    traj.turns[0].timings = TurnTimings(e2e_s=2.0, pause_s=3.0)
    traj.turns[0].tool_calls[0].duration_s = 1.5
    traj.turns[1].timings = TurnTimings(e2e_s=1.0)
    breakdown = pte_breakdown(traj, MODEL_PROFILES["SmolLM2-135M-Instruct"], HARDWARE_PROFILES["H100-PCIe"])
    trace_id = spans_from_trajectory(traj, EpisodeTracer(tp, mp), pte=breakdown)
    finished = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in finished} == {trace_id}
    llms = sorted((s for s in finished if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time)
    tool = next(s for s in finished if s.name == "execute_tool python")
    agent = next(s for s in finished if s.name == "invoke_agent arith")
    s = 1_000_000_000
    assert (llms[0].start_time, llms[0].end_time) == (1000 * s, 1002 * s)
    assert (tool.start_time, tool.end_time) == (1002 * s, int(1003.5 * s))
    assert (llms[1].start_time, llms[1].end_time) == (1005 * s, 1006 * s)
    assert (agent.start_time, agent.end_time) == (1000 * s, 1010 * s)
    assert llms[0].attributes["interleaf.retention.decision"] == "release"
    assert llms[0].attributes["interleaf.pause_s"] == 3.0
    assert llms[1].attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert agent.attributes["interleaf.pte.evict_all"] == pytest.approx(breakdown.evict_all)
    assert agent.attributes["gen_ai.conversation.id"] == "recompute"
    assert all("interleaf.pte" not in c.attributes for c in llms)  # per-call PTE only with turn_pte=
    exporter.clear()
    spans_from_trajectory(traj, EpisodeTracer(tp, mp), turn_pte=[12.5, 7.0])
    replayed = sorted(
        (s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time
    )
    assert [c.attributes["interleaf.pte"] for c in replayed] == [12.5, 7.0]


def test_configure_tracing_without_endpoint_exports_nothing(monkeypatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(var, raising=False)
    setup = configure_tracing(set_global=False)
    try:
        assert not setup.exporting
        assert setup.tracer_provider.resource.attributes["service.name"] == "interleaf"
    finally:
        setup.shutdown()


def test_configure_tracing_refuses_grpc(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"):
        configure_tracing(set_global=False)


@pytest.fixture
def otlp_receiver():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("otlp_receiver.py")), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_otlp_http_export_to_real_receiver(otlp_receiver, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "interleaf-test")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    setup = configure_tracing(set_global=False)
    assert setup.exporting
    agent = run_episode(EpisodeTracer(setup.tracer_provider, setup.meter_provider, capture_content=False))
    setup.shutdown()  # flushes spans and metrics over HTTP
    spans = {s["name"]: s for s in httpx.get(f"{otlp_receiver}/spans").json()}
    assert set(spans) == {"invoke_agent arith-agent", "text_completion SmolLM2-135M-Instruct", "execute_tool python"}
    llm = spans["text_completion SmolLM2-135M-Instruct"]
    assert llm["trace_id"] == agent.trace_id
    assert llm["parent_span_id"] == spans["invoke_agent arith-agent"]["span_id"]
    assert llm["kind"] == 3  # SPAN_KIND_CLIENT in OTLP
    assert llm["resource"]["service.name"] == "interleaf-test"
    assert llm["scope"] == "interleaf"
    attrs = llm["attributes"]
    assert attrs["gen_ai.provider.name"] == "sglang"
    assert attrs["gen_ai.usage.input_tokens"] == 30
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert spans["execute_tool python"]["attributes"]["gen_ai.tool.call.id"] == "call_0_0"
    metrics = {m["name"]: m for m in httpx.get(f"{otlp_receiver}/metrics").json()}
    usage = {p["attributes"]["gen_ai.token.type"]: p for p in metrics["gen_ai.client.token.usage"]["points"]}
    assert (usage["input"]["sum"], usage["output"]["sum"]) == (30, 7)
    assert metrics["gen_ai.client.operation.duration"]["unit"] == "s"


def test_retention_events_before_a_call_become_span_events(otel) -> None:
    from interleaf.telemetry.records import CacheFigures, RetentionDecision, RetentionRecord, Turn

    tp, mp, exporter, _ = otel
    turn = Turn(
        index=2,
        delta_ids=[1] * 5,
        completion_ids=[2] * 3,
        cache=CacheFigures(prompt_tokens=40, cached_tokens=35, completion_tokens=3),
        retention_events=[
            RetentionRecord(policy="session", decision=RetentionDecision.SUSPEND, reason="suspended: budget"),
            RetentionRecord(policy="session", decision=RetentionDecision.QUEUED, reason="waited", wait_s=1.5),
        ],
    )
    with EpisodeTracer(tp, mp).llm_span("m", conversation_id="t") as llm:
        llm.record(turn, pte=5.0)
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["interleaf.retention.suspend", "interleaf.retention.queued"]
    assert span.events[1].attributes["interleaf.admission.wait_s"] == 1.5
    assert span.events[0].attributes["interleaf.retention.reason"] == "suspended: budget"


def test_live_llm_spans_get_server_pause_figures_and_the_episode_pte(otel) -> None:
    """What the live episode does: open each call's span before the server is known, record the turn,
    learn the pause decision later. The span names the server that answered, waits for the episode to
    carry the pause figures, and ends at its own end; the episode span gets its id and PTE."""
    from interleaf.telemetry.records import RetentionDecision, RetentionRecord

    tp, mp, exporter, reader = otel
    tracer = EpisodeTracer(tp, mp, capture_content=True)
    traj = fx.held()
    for t in traj.turns:
        t.server = "http://10.1.2.3:30001"
    traj.turns[0].retention = RetentionRecord(policy="session", decision=RetentionDecision.HOLD, reason="r")
    traj.turns[0].timings.pause_s = 0.25
    with tracer.episode_span(traj) as episode:
        for turn in traj.turns:
            with tracer.llm_span(traj.model, conversation_id=traj.id, max_tokens=32) as llm:
                llm.set_prompt("What is 1?")
                llm.record(turn)
                turn.span_id = llm.span_id
        assert exporter.get_finished_spans() == ()  # waiting for the pause figures
        episode.record(traj)
    spans = exporter.get_finished_spans()
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    calls = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time)
    assert len(calls) == 2 and all(c.end_time < agent.end_time for c in calls)
    first = calls[0].attributes
    assert (first["server.address"], first["server.port"]) == ("10.1.2.3", 30001)
    assert (first["interleaf.retention.policy"], first["interleaf.retention.decision"]) == ("session", "hold")
    assert first["interleaf.pause_s"] == 0.25
    assert "interleaf.pte" not in first  # a live call's span has no PTE (docs/telemetry.md)
    assert "What is 1?" in first["gen_ai.input.messages"]
    expected = pte_breakdown(traj, MODEL_PROFILES["SmolLM2-135M-Instruct"], HARDWARE_PROFILES["H100-PCIe"])
    assert agent.attributes["gen_ai.agent.id"] == traj.id
    assert agent.attributes["interleaf.pte.evict_all"] == pytest.approx(expected.evict_all)
    assert agent.attributes["interleaf.pte.hardware"] == "H100-PCIe"
    points = histogram_points(reader)
    for name in ("gen_ai.client.token.usage", "gen_ai.client.operation.duration"):
        assert {p.attributes.get("server.address") for p in points[name]} == {"10.1.2.3"}, name


def test_replay_gives_the_server_as_address_and_port(otel) -> None:
    tp, mp, exporter, _ = otel
    traj = fx.held()
    traj.turns[0].server = "http://gpu-1:30000"
    spans_from_trajectory(traj, EpisodeTracer(tp, mp))
    call = next(
        s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT and s.attributes.get("server.port")
    )
    assert (call.attributes["server.address"], call.attributes["server.port"]) == ("gpu-1", 30000)
