"""A minimal OTLP/HTTP protobuf receiver, run as a separate process by the tests.

``python otlp_receiver.py PORT`` listens on 127.0.0.1:PORT, accepts ``POST /v1/traces`` and
``POST /v1/metrics`` (protobuf bodies, gzip or not), decodes them with opentelemetry-proto and serves
what it got as JSON on ``GET /spans`` and ``GET /metrics``.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SPANS: list[dict[str, Any]] = []
METRICS: list[dict[str, Any]] = []
LOCK = threading.Lock()


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

    def _reply(self, payload: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(415, "expected application/x-protobuf")
            return
        if self.path == "/v1/traces":
            req = ExportTraceServiceRequest.FromString(self._body())
            with LOCK:
                for rs in req.resource_spans:
                    resource = attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            SPANS.append(
                                {
                                    "name": s.name,
                                    "kind": int(s.kind),
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent_span_id": s.parent_span_id.hex(),
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "status": int(s.status.code),
                                    "attributes": attrs(s.attributes),
                                    "events": [{"name": e.name, "attributes": attrs(e.attributes)} for e in s.events],
                                    "resource": resource,
                                    "scope": ss.scope.name,
                                }
                            )
            self._reply(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")
        elif self.path == "/v1/metrics":
            req = ExportMetricsServiceRequest.FromString(self._body())
            with LOCK:
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            points = m.histogram.data_points if m.HasField("histogram") else []
                            METRICS.append(
                                {
                                    "name": m.name,
                                    "unit": m.unit,
                                    "points": [
                                        {"count": p.count, "sum": p.sum, "attributes": attrs(p.attributes)}
                                        for p in points
                                    ],
                                }
                            )
            self._reply(ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf")
        else:
            self.send_error(404)

    def do_GET(self) -> None:
        with LOCK:
            data = {"/spans": SPANS, "/metrics": METRICS}.get(self.path)
            if data is None:
                self.send_error(404)
                return
            payload = json.dumps(data).encode()
        self._reply(payload, "application/json")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
