"""Every error flowrunner raises on purpose.

    FlowrunnerError                 root; the CLI never shows a traceback for one of these
    ├── UsageError                  exit 2: the run cannot start as asked
    │   ├── FlowValidationError     the flow file is invalid (one or more located problems)
    │   ├── InputError              an input value is missing, unknown or of the wrong type
    │   └── ConfigError             no key, no server, no cassette: nothing to talk to
    └── RunError                    exit 1: the run started and failed
        ├── APIError                the server answered with an error status
        ├── APIConnectionError      no answer at all (refused, reset, dropped)
        │   └── APITimeoutError     no answer within the timeout
        ├── RateLimitError          a limit that waiting within the run cannot cure (daily limit)
        ├── ResponseError           an answer that is not a chat completion
        ├── CassetteMissError       replaying, and the request is not in the cassette
        ├── FunctionError           a flow's Python function raised
        ├── MaxRoundsError          the model kept calling functions past max_rounds
        ├── OutputError             a structured answer that does not match its response_format
        ├── AnswerError             the model answered, but with nothing a step can pass on as it is
        │   ├── RefusalError        the model refused (`message.refusal`)
        │   ├── ContentFilterError  the provider's content filter stopped the answer
        │   ├── TruncatedAnswerError  cut at the token limit (on_length: fail, or a cut structured answer)
        │   └── EmptyAnswerError    no text at all (e.g. a reasoning model spent every token thinking)
        ├── TemplateError           a template failed while rendering
        └── BatchJobError           the Batch API could not run a request, or a whole job (`--via batch-api`)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a flow file, 1-based like editors show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow: where, what, and what to do about it."""

    location: Location | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class FlowrunnerError(Exception):
    """Root of flowrunner's errors; the message is meant for the user as it is."""

    exit_code = 1


class UsageError(FlowrunnerError):
    """The run cannot start as asked; nothing was sent."""

    exit_code = 2


class FlowValidationError(UsageError):
    """A flow file failed the schema or the semantic checks."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(UsageError):
    """An input given to the flow is missing, unknown or of the wrong type."""


class ConfigError(UsageError):
    """Nothing to talk to: no API key, base URL or cassette, or a cassette that is missing."""


class RunError(FlowrunnerError):
    """The run started and failed; the run record says how far it got."""

    exit_code = 1


BILLING_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active",
                           "credit_balance_exhausted", "hard_spend_limit_exceeded", "soft_spend_limit_exceeded",
                           "spend_limit_exceeded"})
"""Error codes (or types) of a 429 that means used-up credit, not a busy server: waiting cannot help."""


class APIError(RunError):
    """The server answered with an error status (OpenAI's error body, when it sent one)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.status = status
        self.type = type
        self.code = code
        self.request_id = request_id
        self.headers = dict(headers or {})
        """The response's headers, lower-case names: the retry delay and rate-limit state are there."""
        super().__init__(message)


class APIConnectionError(RunError):
    """The request got no complete answer: connection refused, reset or dropped, or a timeout."""


class APITimeoutError(APIConnectionError):
    """No answer within the request timeout."""


class RateLimitError(RunError):
    """A rate limit that waiting inside the run cannot cure, such as a used-up daily limit."""


class ResponseError(RunError):
    """The server answered 2xx with something that is not a chat completion."""


class CassetteMissError(RunError):
    """Replaying a cassette, and the request the flow made is not recorded in it."""


class FunctionError(RunError):
    """A flow's Python function raised or timed out; the message names the function and where it failed."""

    def __init__(self, message: str, reason: str | None = None):
        self.reason = reason or message
        """What went wrong, briefly and without file paths: what the model is told under `on_error: reply`."""
        super().__init__(message)


class MaxRoundsError(RunError):
    """The model still asked for function calls after the step's max_rounds."""


class OutputError(RunError):
    """A step's answer is not the JSON its `response_format` asks for, even after the repairs allowed."""


class AnswerError(RunError):
    """The server answered 2xx with a well-formed completion that holds no answer to hand on as it is."""


class RefusalError(AnswerError):
    """The model refused (`message.refusal`, content null); `refusal` is its text."""

    def __init__(self, message: str, refusal: str):
        self.refusal = refusal
        super().__init__(message)


class ContentFilterError(AnswerError):
    """The provider's content filter stopped the answer (`finish_reason: content_filter`)."""


class TruncatedAnswerError(AnswerError):
    """The answer was cut at the token limit (`finish_reason: length`) and the step cannot use it cut."""


class EmptyAnswerError(AnswerError):
    """The answer has no text: an empty string is never handed on as an answer."""


class TemplateError(RunError):
    """A template failed while rendering (a variable with no value, bad JSON, ...)."""

    def __init__(self, message: str, location: Location | None = None):
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class BatchJobError(RunError):
    """The Batch API gave up on a request (expired or cancelled too often), or on a job (a failed batch)."""
