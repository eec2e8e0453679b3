"""Tracing configuration: the OpenTelemetry providers ``configure_tracing`` installs from the standard
``OTEL_*`` environment, and the switch that lets spans carry prompts, completions and tool contents."""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

CONTENT_ENV = "INTERLEAF_TRACE_CONTENT"
"""Set to 1 to record prompts, completions, tool arguments and results in spans."""


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


OTLP_PROTOCOL_VARS = (
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
)
"""The standard variables that choose the OTLP protocol (per signal, then for both)."""


def check_otlp_protocol() -> None:
    """ValueError naming the variable and its value when the environment asks for an OTLP protocol other
    than ``http/protobuf``, the only exporter interleaf ships. Commands that start workers call it before
    starting anything (a worker would fail later, in a Ray actor)."""
    for name in OTLP_PROTOCOL_VARS:
        protocol = os.environ.get(name)
        if protocol and protocol != "http/protobuf":
            raise ValueError(
                f"{name}={protocol!r} is not supported: interleaf ships the OTLP/HTTP protobuf exporter only; set "
                "it to http/protobuf (or unset it) and point the endpoint at the collector's HTTP port"
            )


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
    check_otlp_protocol()
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


__all__ = [
    "CONTENT_ENV",
    "OTLP_PROTOCOL_VARS",
    "TracingSetup",
    "check_otlp_protocol",
    "configure_tracing",
    "content_capture_enabled",
]
