"""An OTLP/HTTP receiver on 127.0.0.1 for the tracing tests: it accepts POST /v1/traces, decodes each
ExportTraceServiceRequest with opentelemetry-proto, and keeps the spans as plain dicts."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _value(value: Any) -> Any:
    """An OTLP AnyValue as Python."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class OTLPReceiver:
    """What arrived: `requests` (decoded requests, in order) and `spans` (every span, with its resource's attributes)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay  # seconds before answering: a collector that hangs
        self.requests: list[Any] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._answer = threading.Event()  # set on exit: a hanging receiver answers then
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest, ExportTraceServiceResponse)

                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.paths.append(self.path)
                    receiver.content_types.append(self.headers.get("content-type", ""))
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver._answer.wait(receiver.delay)
                payload = ExportTraceServiceResponse().SerializeToString()
                try:
                    self.send_response(receiver.status)
                    self.send_header("content-type", "application/x-protobuf")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the exporter gave up waiting (a hanging receiver's test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def spans(self) -> list[dict[str, Any]]:
        found = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append({
                            "name": span.name, "kind": span.kind, "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                            "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                            "attributes": _attributes(span.attributes),
                            "events": [{"name": e.name, "time": e.time_unix_nano, "attributes": _attributes(e.attributes)}
                                       for e in span.events],
                            "status": span.status.code, "status_message": span.status.message,
                            "resource": resource, "scope": scope_spans.scope.name,
                        })
        return found

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._answer.set()
        self._server.shutdown()
        self._server.server_close()


