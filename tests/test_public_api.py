"""The public API is what `flowrunner.__all__` says, and each name really is there."""

from __future__ import annotations

import subprocess
import sys

import flowrunner

PUBLIC = {
    "APIConnectionError", "APIError", "APITimeoutError", "AttemptRecord", "Backoff", "OutputError",
    "RateLimit", "RateLimitError", "RateLimiter", "RetryPolicy", "CallRecord", "CassetteMissError", "ChatSession", "Completion",
    "ConfigError", "Engine", "Event", "Flow", "FlowValidationError", "FlowrunnerError", "FunctionError",
    "FunctionSpec", "FunctionTransport", "InputError", "InputSpec", "Location", "MaxRoundsError", "Message",
    "OpenAITransport", "Problem", "RECORD_MODES", "ResponseError", "RoundRecord", "RunError", "RunRecord",
    "Step", "StepRecord", "TemplateError", "ToolCall", "Transport", "UsageError", "__version__",
    "load_flow", "use_cassette",
    "AnswerError", "ContentFilterError", "EmptyAnswerError", "RefusalError", "TruncatedAnswerError",
}


def test_all_is_pinned():
    assert set(flowrunner.__all__) == PUBLIC


def test_every_public_name_resolves():
    for name in flowrunner.__all__:
        assert getattr(flowrunner, name) is not None


def test_errors_share_one_root_with_exit_codes():
    assert issubclass(flowrunner.FlowValidationError, flowrunner.UsageError)
    for name in ("APIError", "APIConnectionError", "APITimeoutError", "CassetteMissError", "FunctionError",
                 "MaxRoundsError", "OutputError", "RateLimitError", "ResponseError", "TemplateError",
                 "AnswerError", "ContentFilterError", "EmptyAnswerError", "RefusalError", "TruncatedAnswerError"):
        error = getattr(flowrunner, name)
        assert issubclass(error, flowrunner.RunError) and error.exit_code == 1
    for name in ("FlowValidationError", "InputError", "ConfigError"):
        assert getattr(flowrunner, name).exit_code == 2


def test_import_is_cheap():
    code = "import sys, flowrunner; print(sorted(m for m in sys.modules if m.startswith(('flowrunner.', 'openai', 'vcr', 'jsonschema'))))"
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True)
    assert done.stdout.strip() == "[]"
