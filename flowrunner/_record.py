"""The run record: what a run did, round by round, as plain data that `--json` prints.

It holds no timestamps or durations, so a run recorded live and the same run replayed from its
cassette produce identical records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ._exceptions import RunError
from ._secrets import WHOLE_VALUES

Status = Literal["succeeded", "failed"]
_TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the exception object itself is left out; `error` describes it)."""
        return {
            "flow": self.flow, "file": self.file, "status": self.status, "inputs": self.inputs,
            "outputs": self.outputs, "steps": [asdict(step) for step in self.steps],
            "usage": self.usage, "error": self.error,
        }

    def raise_for_status(self) -> RunRecord:
        """Raise the run's error if it failed, for library users who prefer exceptions."""
        if self.exception is not None:
            raise self.exception
        return self
