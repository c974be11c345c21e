"""Where traces go: the standard variables, else the OTLP/HTTP default on localhost."""

from __future__ import annotations

import pytest

from flowrunner.tracing import DEFAULT_ENDPOINT, RunTracer


@pytest.fixture(autouse=True)
def _no_otel_variables(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variables, endpoint", [
    ({}, DEFAULT_ENDPOINT),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom"}, "http://traces:9999/custom"),
])
def test_the_endpoint_follows_the_standard_variables(monkeypatch, variables, endpoint):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    tracer = RunTracer(base_url=None)
    try:
        assert tracer.endpoint == endpoint
    finally:
        tracer.close()


@pytest.mark.parametrize("value, captured", [("true", True), ("TRUE", True), ("1", False), ("", False)])
def test_content_capture_is_opt_in(monkeypatch, value, captured):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    tracer = RunTracer(base_url=None)
    try:
        assert tracer.capture_content is captured
    finally:
        tracer.close()
