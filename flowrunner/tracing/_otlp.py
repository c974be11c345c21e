"""Emit span plans through the OpenTelemetry SDK and send each run's trace over OTLP/HTTP (protobuf).

Each run is exported on its own when it ends, in one POST bounded by a timeout; the first export
that fails (no collector there, a refusal, a timeout) is reported once and turns exporting off for
the rest of the command, so a missing collector costs one timeout at most.

The POST goes through `http.client`'s connection classes as they were when this module was imported
(the CLI imports it before any cassette is used), not through `requests` as the SDK's exporter
does: a cassette (vcrpy) patches every HTTP client while it is in use, and a batch or a chat sends
its traces inside one, where the export would be replayed or recorded instead of sent.
"""

from __future__ import annotations

import gzip
import http.client
import os
import ssl
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.re import parse_env_headers

from .. import __version__

if TYPE_CHECKING:
    from ._spans import SpanPlan

_HTTPConnection, _HTTPSConnection = http.client.HTTPConnection, http.client.HTTPSConnection  # unpatched

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
TIMEOUT = 3.0
"""Seconds one export may take, unless OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT (seconds, as the SDK reads it) says."""

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


def _setting(name: str) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_{name}, else OTEL_EXPORTER_OTLP_{name}, else ''."""
    return (os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}")
            or "").strip()


def endpoint() -> str:
    """Where traces go: the traces endpoint as it is, else the base endpoint + /v1/traces, else localhost:4318."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else DEFAULT_ENDPOINT


class ExportError(Exception):
    """A trace was not accepted: no answer, or not a 2xx."""


class _Collect(SpanProcessor):
    """Keeps ended spans by trace, for the exporter to send a run's trace whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[int, list[ReadableSpan]] = {}

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        with self._lock:
            self._spans.setdefault(span.context.trace_id, []).append(span)

    def take(self, trace_id: int) -> list[ReadableSpan]:
        with self._lock:
            return self._spans.pop(trace_id, [])


class OTLPSender:
    """One per command: a tracer provider and the OTLP/HTTP settings, shared by every run (batch workers too)."""

    def __init__(self) -> None:
        self._collect = _Collect()
        self._provider = TracerProvider(resource=_resource())
        self._provider.add_span_processor(self._collect)
        self._tracer = self._provider.get_tracer("flowrunner", __version__)
        self.endpoint = endpoint()
        try:
            self.timeout = float(_setting("TIMEOUT") or TIMEOUT)
        except ValueError:
            self.timeout = TIMEOUT
        self.headers = {"content-type": "application/x-protobuf", "user-agent": f"flowrunner/{__version__}",
                        **parse_env_headers(_setting("HEADERS"), liberal=True)}
        self.gzip = _setting("COMPRESSION").lower() == "gzip"
        self._lock = threading.Lock()
        self.failed = False
        self.reason: str | None = None
        """Why the export failed, when it did."""

    def send(self, root: SpanPlan) -> bool:
        """Emit the tree and export it; False if the export failed (this one or an earlier one)."""
        if self.failed:
            return False
        span = self._emit(root, Context())  # an empty context: every run is a trace of its own
        body = encode_spans(self._collect.take(span.get_span_context().trace_id)).SerializeToString()
        with self._lock:  # one export at a time: a batch's workers would otherwise race to report
            if self.failed:
                return False
            try:
                self._post(body)
            except (OSError, http.client.HTTPException, ExportError, ValueError) as exc:
                self.failed, self.reason = True, str(exc) or type(exc).__name__
        return not self.failed

    def _post(self, body: bytes) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ExportError(f"not an http(s) URL: {self.endpoint}")
        headers = dict(self.headers)
        if self.gzip:
            body, headers["content-encoding"] = gzip.compress(body), "gzip"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=_setting("CERTIFICATE") or None)
            if _setting("CLIENT_CERTIFICATE"):
                context.load_cert_chain(_setting("CLIENT_CERTIFICATE"), _setting("CLIENT_KEY") or None)
            connection: http.client.HTTPConnection = _HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                                      context=context)
        else:
            connection = _HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            connection.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers)
            response = connection.getresponse()
            answer = response.read(2000)
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            text = answer.decode("utf-8", "replace").strip()
            raise ExportError(f"HTTP {response.status}{': ' + text[:200] if text.isprintable() and text else ''}")

    def _emit(self, plan: SpanPlan, context: Context) -> trace.Span:
        span = self._tracer.start_span(plan.name, context=context, kind=_KINDS[plan.kind],
                                       attributes=plan.attributes, start_time=_ns(plan.start))
        for event in plan.events:
            span.add_event(event.name, event.attributes, timestamp=_ns(event.time))
        if plan.error is not None:
            span.set_status(Status(StatusCode.ERROR, plan.error[:1000]))
        inside = trace.set_span_in_context(span, context)
        for child in plan.children:
            self._emit(child, inside)
        span.end(end_time=_ns(plan.end))
        return span

    def close(self) -> None:
        try:
            self._provider.shutdown()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _resource() -> Resource:
    """service.name `flowrunner` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one (the SDK reads both)."""
    given = OTELResourceDetector().detect().attributes
    ours: dict[str, Any] = {"service.name": "flowrunner", "service.version": __version__}
    return Resource.create({key: value for key, value in ours.items() if key not in given})


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)
