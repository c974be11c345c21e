"""Emit span plans through the OpenTelemetry SDK and send each run's trace over OTLP/HTTP (protobuf).

Each run is exported on its own, at once, when it ends, in one request bounded by a timeout; the
first export that fails (no collector there, a refusal, a timeout) is reported once and turns
exporting off for the rest of the command, so a missing collector costs one timeout at most.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__

if TYPE_CHECKING:
    from ._spans import SpanPlan

TIMEOUT = 3.0
"""Seconds one export may take, retries included, unless OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT says otherwise."""

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


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


class _Heard(logging.Handler):
    """Keeps the SDK's last warning, to say why an export failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.last = record.getMessage()[:300]
        except Exception:  # noqa: BLE001 - a log line that cannot be formatted is not worth a failure
            self.last = record.msg if isinstance(record.msg, str) else None


class OTLPSender:
    """One per command: a tracer provider and an OTLP/HTTP exporter, shared by every run (batch workers too)."""

    def __init__(self, endpoint: str | None) -> None:
        # The SDK's own log lines ("Failed to export ...", each retry) would repeat on stderr; the one
        # warning the CLI prints says what matters.
        self._heard = _Heard()
        for name in ("opentelemetry.exporter", "opentelemetry.sdk"):
            logger = logging.getLogger(name)
            logger.addHandler(self._heard)
            logger.propagate = False
        self._collect = _Collect()
        self._provider = TracerProvider(resource=_resource())
        self._provider.add_span_processor(self._collect)
        self._tracer = self._provider.get_tracer("flowrunner", __version__)
        timeout = None if (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                           or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")) else TIMEOUT
        self.exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
        self.endpoint: str = getattr(self.exporter, "_endpoint", endpoint or "")
        self._lock = threading.Lock()
        self.failed = False

    @property
    def reason(self) -> str | None:
        """What the SDK last said went wrong, if anything."""
        return self._heard.last

    def send(self, root: SpanPlan) -> bool:
        """Emit the tree and export it; False if the export failed (this one or an earlier one)."""
        if self.failed:
            return False
        span = self._emit(root, Context())  # an empty context: every run is a trace of its own
        spans = self._collect.take(span.get_span_context().trace_id)
        with self._lock:  # one export at a time: a batch's workers share the HTTP session
            if self.failed:
                return False
            try:
                ok = self.exporter.export(spans) == SpanExportResult.SUCCESS
            except Exception:  # noqa: BLE001 - a collector's trouble must never fail a run
                ok = False
            self.failed = not ok
        return ok

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
