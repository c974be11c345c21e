"""The run record: what a run did, round by round, as plain data that `--json` prints.

A run recorded live and the same run replayed from its cassette produce identical records apart
from the timing fields (`TIMING_FIELDS`: when each part began, in unix seconds from `time.time()`,
and how long it took, in seconds measured on `time.monotonic()`); `without_timing` drops them, for
comparing two records. A replay has timings of its own: those of answers read from a cassette.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ._exceptions import RunError
from ._secrets import JSON_TEXTS, WHOLE_VALUES

Status = Literal["succeeded", "failed"]
_TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


TIMING_FIELDS = frozenset({"started", "duration", "sent", "latency", "ttft", "waited_rate_limit", "waited_retry"})
"""The fields that differ between a run and its replay (see `without_timing`)."""


def add_usage(total: dict[str, int], usage: dict[str, Any] | None) -> None:
    """Add a response's token counts into a running total (servers may omit any of them)."""
    for key in _TOKEN_KEYS:
        value = (usage or {}).get(key)
        total[key] = total.get(key, 0) + (value if isinstance(value, int) else 0)


def _zero_usage() -> dict[str, int]:
    return dict.fromkeys(_TOKEN_KEYS, 0)


@dataclass
class CallRecord:
    """One function call the model asked for, and what came of it."""

    id: str | None
    name: str
    arguments: dict[str, Any] | None
    """Parsed arguments; None when they were not a JSON object (then `raw_arguments` has the text)."""
    result: Any = None
    error: str | None = None
    raw_arguments: str | None = None
    server: str | None = None
    """The MCP server the call went to (`tools/call`); None for a Python function."""
    started: float | None = None
    duration: float | None = None
    """The function's own time: its arguments checked, the function run (None for a call that was not run)."""


@dataclass
class AttemptRecord:
    """One HTTP attempt at a round's request: its status (None when no answer came), and the wait after it."""

    status: int | None
    error: str | None = None
    """The error class (`APIError`, `APITimeoutError`, ...); None for the attempt that succeeded."""
    code: str | None = None
    message: str | None = None
    slept: float = 0.0
    """Seconds waited before the next attempt."""
    started: float | None = None
    """When the request left (after its turn from the rate limiter)."""
    duration: float | None = None
    """Seconds from then to the answer (or the error); None if the rate limiter refused the request."""


@dataclass
class RoundRecord:
    """One request and its response within a step."""

    response_id: str | None
    model: str | None
    finish_reason: str | None
    content: str | None
    calls: list[CallRecord] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    """Every HTTP attempt this round's request took (one, unless it was retried)."""
    invalid_output: str | None = None
    """Why this round's answer did not match the step's response_format (it was sent back for repair)."""
    refusal: str | None = None
    """The model's refusal (`message.refusal`), when it refused instead of answering."""
    audio: dict[str, Any] | None = None
    """A spoken answer's `id`, `expires_at` and `transcript`, and `data_omitted_chars`: how long its base64
    audio was. The audio itself is not kept: it can run to megabytes."""
    cost: float | None = None
    """US dollars (see `_pricing`): None when the model has no known price or the answer no usage."""
    request: dict[str, Any] | None = field(default=None, metadata={JSON_TEXTS: True})
    """The request body as sent (model, messages so far, tools, options; redacted like the rest), so two
    runs' requests can be compared round by round (`flowrun runs diff`, `flowrun view`, traced content)."""
    started: float | None = None
    """When the round began, before its turn from the rate limiter."""
    sent: float | None = None
    """When the request of its last attempt (the one whose answer or error the round has) left."""
    latency: float | None = None
    """Seconds from `sent` to the whole answer."""
    ttft: float | None = None
    """Seconds from `sent` to the first chunk of a streamed answer (None unless streamed)."""
    waited_rate_limit: float | None = None
    """Seconds spent waiting for turns from the rate limiter, all attempts together."""
    waited_retry: float | None = None
    """Seconds spent in the retry policy's back-off between attempts."""


@dataclass
class StepRecord:
    """A step: its rounds, its final content, its token usage."""

    id: str
    model: str
    status: Status = "succeeded"
    content: str | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=_zero_usage)
    warnings: list[str] = field(default_factory=list)
    """What the step passed on but should not go unseen, e.g. an answer cut at the token limit."""
    cost: float | None = None
    """US dollars, its rounds' together; None if any of them has no cost (a partial sum would mislead)."""
    started: float | None = None
    duration: float | None = None


@dataclass
class RunRecord:
    """A whole run: inputs, outputs, every step, total usage, and the error if it failed."""

    flow: str
    file: str
    inputs: dict[str, Any] = field(metadata={WHOLE_VALUES: True})
    """A value read from the environment (`env:`) is shown whole as `[redacted:NAME]`."""
    status: Status = "succeeded"
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=_zero_usage)
    error: dict[str, Any] | None = None
    exception: RunError | None = field(default=None, repr=False, compare=False)
    cost: float | None = None
    """US dollars, its steps' together; None if any round has no cost."""
    started: float | None = None
    duration: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the exception object itself is left out; `error` describes it)."""
        return {
            "flow": self.flow, "file": self.file, "status": self.status, "inputs": self.inputs,
            "outputs": self.outputs, "steps": [asdict(step) for step in self.steps],
            "usage": self.usage, "cost": self.cost, "error": self.error, "started": self.started, "duration": self.duration,
        }

    def raise_for_status(self) -> RunRecord:
        """Raise the run's error if it failed, for library users who prefer exceptions."""
        if self.exception is not None:
            raise self.exception
        return self


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A record's dict (`RunRecord.to_dict()`) without its timing fields, at every level: what a run
    and its replay have in common. Only the record's own fields go: a function's result keeps its keys."""
    def drop(part: dict[str, Any], **nested: dict[str, Any]) -> dict[str, Any]:
        kept = {key: value for key, value in part.items() if key not in TIMING_FIELDS}
        for key, children in nested.items():
            if isinstance(kept.get(key), list):
                kept[key] = [drop(child, **children) for child in kept[key]]
        return kept

    return drop(record, steps={"rounds": {"calls": {}, "attempts": {}}})
