"""flowrunner: declarative YAML workflows for LLM chat completions.

    flow = load_flow("flows/weather.yaml")              # validated, or FlowValidationError
    record = Engine(OpenAITransport()).run(flow, {"question": "Weather in Paris?"})
    print(record.outputs["answer"])
"""

from __future__ import annotations

__version__ = "0.1.0"

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> private module. Imported on first use, so `flowrun --help` pays for none of them.
_EXPORTS = {
    "RECORD_MODES": "_cassette", "use_cassette": "_cassette",
    "ChatSession": "_engine", "Engine": "_engine", "Event": "_engine",
    "APIConnectionError": "_exceptions", "APIError": "_exceptions", "APITimeoutError": "_exceptions",
    "CassetteMissError": "_exceptions", "OutputError": "_exceptions", "RateLimitError": "_exceptions",
    "ConfigError": "_exceptions", "FlowrunnerError": "_exceptions", "FlowValidationError": "_exceptions",
    "FunctionError": "_exceptions", "InputError": "_exceptions", "Location": "_exceptions",
    "MaxRoundsError": "_exceptions", "Problem": "_exceptions", "ResponseError": "_exceptions",
    "RunError": "_exceptions", "TemplateError": "_exceptions", "UsageError": "_exceptions",
    "AnswerError": "_exceptions", "ContentFilterError": "_exceptions", "EmptyAnswerError": "_exceptions",
    "RefusalError": "_exceptions", "TruncatedAnswerError": "_exceptions",
    "load_flow": "_loader",
    "Flow": "_model", "FunctionSpec": "_model", "InputSpec": "_model", "Message": "_model", "Step": "_model",
    "RateLimit": "_ratelimit", "RateLimiter": "_ratelimit", "Backoff": "_retry", "RetryPolicy": "_retry",
    "AttemptRecord": "_record", "CallRecord": "_record", "RoundRecord": "_record", "RunRecord": "_record", "StepRecord": "_record",
    "Completion": "_transport", "FunctionTransport": "_transport", "OpenAITransport": "_transport",
    "ToolCall": "_transport", "Transport": "_transport",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowrunner' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ._cassette import RECORD_MODES, use_cassette
    from ._engine import ChatSession, Engine, Event
    from ._exceptions import (AnswerError, APIConnectionError, APIError, APITimeoutError, CassetteMissError,
                              ConfigError, ContentFilterError, EmptyAnswerError, FlowrunnerError, FlowValidationError,
                              FunctionError, InputError, Location, MaxRoundsError, OutputError, Problem,
                              RateLimitError, RefusalError, ResponseError, RunError, TemplateError,
                              TruncatedAnswerError, UsageError)
    from ._loader import load_flow
    from ._model import Flow, FunctionSpec, InputSpec, Message, Step
    from ._ratelimit import RateLimit, RateLimiter
    from ._record import AttemptRecord, CallRecord, RoundRecord, RunRecord, StepRecord
    from ._retry import Backoff, RetryPolicy
    from ._transport import Completion, FunctionTransport, OpenAITransport, ToolCall, Transport

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AnswerError",
    "AttemptRecord",
    "Backoff",
    "CallRecord",
    "CassetteMissError",
    "ChatSession",
    "Completion",
    "ConfigError",
    "ContentFilterError",
    "EmptyAnswerError",
    "Engine",
    "Event",
    "Flow",
    "FlowValidationError",
    "FlowrunnerError",
    "FunctionError",
    "FunctionSpec",
    "FunctionTransport",
    "InputError",
    "InputSpec",
    "Location",
    "MaxRoundsError",
    "Message",
    "OpenAITransport",
    "OutputError",
    "Problem",
    "RECORD_MODES",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "RefusalError",
    "ResponseError",
    "RetryPolicy",
    "RoundRecord",
    "RunError",
    "RunRecord",
    "Step",
    "StepRecord",
    "TemplateError",
    "ToolCall",
    "Transport",
    "TruncatedAnswerError",
    "UsageError",
    "__version__",
    "load_flow",
    "use_cassette",
]
