"""OpenTelemetry traces of runs, sent over OTLP/HTTP: `pip install 'flowrunner[otel]'`.

The one seam is `RunTracer.trace(record, flow)`, called after a run with its record: the spans
are built from the record (see `_spans` for the tree and the names), not while the run goes, so
the engine knows nothing of tracing. Importing this package imports the OpenTelemetry SDK: the
CLI does so only when tracing is on (`--trace`, or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT set).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .._secrets import redact_url
from ._otlp import DEFAULT_ENDPOINT, OTLPSender
from ._spans import plan

if TYPE_CHECKING:
    from .._model import Flow
    from .._record import RunRecord

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

__all__ = ["CAPTURE_CONTENT", "DEFAULT_ENDPOINT", "RunTracer", "capture_content"]


def capture_content() -> bool:
    """Whether spans may hold what was said (the conventions' opt-in variable): off unless `true`."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


class RunTracer:
    """Sends one trace per run to the collector the standard variables name (else localhost:4318)."""

    def __init__(self, *, base_url: str | None) -> None:
        self.base_url = base_url
        """Where the runs' requests go (None: not known, as when a cassette is replayed)."""
        self.capture_content = capture_content()
        self._sender = OTLPSender()
        self._warned = False

    @property
    def endpoint(self) -> str:
        return self._sender.endpoint

    def trace(self, record: RunRecord, flow: Flow | None) -> str | None:
        """Send the run's trace; a warning to show (once per command) if it could not be sent."""
        root = plan(record, flow, base_url=self.base_url, capture_content=self.capture_content, now=time.time())
        if self._sender.send(root) or self._warned:
            return None
        self._warned = True
        reason = self._sender.reason
        return (f"could not send the trace to {redact_url(self.endpoint)}{f' ({reason})' if reason else ''}; no more traces "
                "are sent by this command\n  hint: start a collector there (Jaeger, Phoenix, the OpenTelemetry "
                "Collector), or point OTEL_EXPORTER_OTLP_ENDPOINT at one")

    def close(self) -> None:
        self._sender.close()
