"""What a flow's test case expects of a run, and the checks that compare it with the run record.

Everything here is pure: a check reads a RunRecord and returns Failures, each saying what was
expected, what came, and where the expectation is in the flow file. Building checks from YAML (and
reporting mistakes in them) is `_testcases.py`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from ._exceptions import Location
from ._json import loads
from ._output import unfence
from ._record import CallRecord, RunRecord
from ._schema import schema_validator

MATCHER_NAMES = ("equals", "contains", "not_contains", "regex", "schema")
"""The keys of a matcher mapping; any other mapping is a plain value to compare with `equals`."""


@dataclass(frozen=True)
class Failure:
    """One unmet expectation: where it is written, what it is about, what went wrong."""

    location: Location | None
    subject: str
    """What was checked, as the YAML says it: `outputs.answer`, `calls[0].arguments.location`."""
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.subject}: {self.message}"


def show(value: Any, limit: int = 200) -> str:
    """A value as a failure message quotes it: repr for text, JSON otherwise, clipped."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_json(value: Any) -> tuple[Any, str | None]:
    """Text parsed as JSON (a ```json fence around it is fine); other values as they are."""
    if not isinstance(value, str):
        return value, None
    try:
        return loads(unfence(value)), None
    except ValueError as exc:
        return None, f"expected JSON, got {show(value)} ({exc})"


@dataclass(frozen=True)
class Matcher:
    """One matcher of an expectation (`contains: Boston`), with where it is written."""

    kind: str
    expected: Any
    location: Location | None = None

    def mismatch(self, actual: Any, text_is_json: bool = True) -> str | None:
        """None when `actual` satisfies the matcher, else why not, for a user. With `text_is_json`
        (outputs: always text), a `schema` matcher parses text as JSON; arguments come parsed."""
        if self.kind == "equals":
            return None if _equal(actual, self.expected) else f"expected {show(self.expected)}, got {show(actual)}"
        if self.kind in ("contains", "not_contains"):
            found = _contains(actual, self.expected)
            if found == (self.kind == "contains"):
                return None
            verb = "to contain" if self.kind == "contains" else "not to contain"
            return f"expected {verb} {show(self.expected)}, got {show(actual)}"
        if self.kind == "regex":
            text = actual if isinstance(actual, str) else json.dumps(actual, ensure_ascii=False)
            if re.search(self.expected, text):
                return None
            return f"expected to match the regex {self.expected!r}, got {show(actual)}"
        if self.kind == "schema":
            value, problem = as_json(actual) if text_is_json else (actual, None)
            if problem:
                return problem
            error = next(iter(sorted(schema_validator(self.expected).iter_errors(value),
                                     key=lambda e: list(e.absolute_path))), None)
            if error is None:
                return None
            at = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
            return f"does not match the schema{f' at {at}' if at else ''}: {error.message} (got {show(actual)})"
        raise ValueError(f"unknown matcher {self.kind!r}")  # the loader admits only MATCHER_NAMES


def _equal(actual: Any, expected: Any) -> bool:
    if actual == expected and type(actual) is not bool and type(expected) is not bool:
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    # Outputs are text: `count: 3` in the YAML means the output "3".
    if isinstance(actual, str) and isinstance(expected, (int, float)):
        return actual.strip() == json.dumps(expected)
    return False


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return (expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False)) in actual
    if isinstance(actual, list):
        return expected in actual
    if isinstance(actual, dict):  # a key; a list or mapping can be none
        return isinstance(expected, str) and expected in actual
    return False


@dataclass(frozen=True)
class Expectation:
    """A plain value (equals) or a mapping of matchers; all must hold."""

    matchers: tuple[Matcher, ...]

    def failures(self, actual: Any, subject: str, text_is_json: bool = True) -> list[Failure]:
        found = []
        for matcher in self.matchers:
            why = matcher.mismatch(actual, text_is_json)
            if why is not None:
                found.append(Failure(matcher.location, subject, why))
        return found


class Check(Protocol):
    """Something a test case expects of a run."""

    def failures(self, record: RunRecord) -> list[Failure]: ...


@dataclass(frozen=True)
class StatusCheck:
    """The run succeeded (the default expectation), or failed, maybe with a given error."""

    expected: str = "succeeded"
    error: Expectation | None = None
    location: Location | None = None

    def failures(self, record: RunRecord) -> list[Failure]:
        if record.status != self.expected:
            if record.status == "failed":
                message = (record.error or {}).get("message", "")
                return [Failure(self.location, "status", f"the run failed: {message}")]
            return [Failure(self.location, "status", "expected the run to fail, but it succeeded")]
        if self.error is not None:
            return self.error.failures((record.error or {}).get("message", ""), "error")
        return []


@dataclass(frozen=True)
class OutputCheck:
    """An output's value."""

    name: str
    expectation: Expectation
    location: Location | None = None

    def failures(self, record: RunRecord) -> list[Failure]:
        if self.name not in record.outputs:
            return [Failure(self.location, f"outputs.{self.name}", f"no such output in the run "
                            f"(outputs: {', '.join(record.outputs) or 'none'})")]
        return self.expectation.failures(record.outputs[self.name], f"outputs.{self.name}")


@dataclass(frozen=True)
class ExpectedCall:
    """A call the model must have made: the function, maybe the step, some of the arguments."""

    name: str
    arguments: tuple[tuple[str, Expectation, Location | None], ...] = ()
    step: str | None = None
    location: Location | None = None


def made_calls(record: RunRecord) -> list[tuple[str, CallRecord]]:
    """Every call of the run, in order, with the id of its step."""
    return [(step.id, call) for step in record.steps for round_ in step.rounds for call in round_.calls]


def show_call(call: CallRecord) -> str:
    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None else call.raw_arguments
    return f"{call.name}({args})"


@dataclass(frozen=True)
class CallsCheck:
    """The calls the model made: all of them, in order."""

    calls: tuple[ExpectedCall, ...]
    location: Location | None = None

    def failures(self, record: RunRecord) -> list[Failure]:
        made = made_calls(record)
        if len(made) != len(self.calls):
            listing = "; ".join(f"{show_call(call)} in step {step!r}" for step, call in made) or "none"
            return [Failure(self.location, "calls", f"expected {_count(len(self.calls), 'call')}, "
                            f"the model made {len(made)}: {listing}")]
        found: list[Failure] = []
        for index, (expected, (step, call)) in enumerate(zip(self.calls, made)):
            subject = f"calls[{index}]"
            if call.name != expected.name:
                found.append(Failure(expected.location, subject,
                                     f"expected a call of {expected.name}, got {show_call(call)}"))
                continue
            if expected.step is not None and step != expected.step:
                found.append(Failure(expected.location, subject,
                                     f"expected in step {expected.step!r}, made in step {step!r}"))
            for name, expectation, where in expected.arguments:
                arg_subject = f"{subject}.arguments.{name}"
                if call.arguments is None:
                    found.append(Failure(where, arg_subject, f"the arguments were not a JSON object: "
                                         f"{show(call.raw_arguments)}"))
                elif name not in call.arguments:
                    found.append(Failure(where, arg_subject, f"not given (the call was {show_call(call)})"))
                else:
                    found.extend(expectation.failures(call.arguments[name], arg_subject, text_is_json=False))
        return found


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class RoundsCheck:
    """How many requests were made: in the whole run (step None) or in one step."""

    expected: int
    step: str | None = None
    location: Location | None = None

    def failures(self, record: RunRecord) -> list[Failure]:
        steps = [s for s in record.steps if self.step is None or s.id == self.step]
        got = sum(len(s.rounds) for s in steps)
        if got == self.expected:
            return []
        subject = "rounds" if self.step is None else f"rounds.{self.step}"
        detail = ", ".join(f"{s.id}: {len(s.rounds)}" for s in record.steps)
        return [Failure(self.location, subject, f"expected {self.expected}, got {got} ({detail or 'no step ran'})")]


@dataclass(frozen=True)
class FinishReasonCheck:
    """The finish reason of the run's last response."""

    expectation: Expectation

    def failures(self, record: RunRecord) -> list[Failure]:
        rounds = [r for s in record.steps for r in s.rounds]
        return self.expectation.failures(rounds[-1].finish_reason if rounds else None, "finish_reason")


def check_record(checks: tuple[Check, ...], record: RunRecord) -> list[Failure]:
    """Every failure of the checks; once the status is wrong, the rest would only add noise."""
    found: list[Failure] = []
    for check in checks:
        found.extend(check.failures(record))
        if found and isinstance(check, StatusCheck):
            break
    return found


@dataclass(frozen=True)
class BoundCheck:
    """A measure of the run within bounds: its `cost` (US dollars), `latency` (its duration, seconds)
    or `tokens` (all of its tokens)."""

    measure: str
    minimum: float | None = None
    maximum: float | None = None
    location: Location | None = None

    def failures(self, record: RunRecord) -> list[Failure]:
        got, note = self._measured(record)
        if got is None:
            return [Failure(self.location, self.measure, note)]
        if self.maximum is not None and got > self.maximum:
            return [Failure(self.location, self.measure,
                            f"expected at most {self._show(self.maximum)}, got {self._show(got)}{note}")]
        if self.minimum is not None and got < self.minimum:
            return [Failure(self.location, self.measure,
                            f"expected at least {self._show(self.minimum)}, got {self._show(got)}{note}")]
        return []

    def _measured(self, record: RunRecord) -> tuple[float | None, str]:
        if self.measure == "cost":
            if record.cost is None:
                from ._pricing import PRICE_HINT, cost_problems

                why = "; ".join(cost_problems(record)) or "no step ran"
                return None, f"the run's cost is unknown: {why}\n  hint: {PRICE_HINT}"
            return record.cost, ""
        if self.measure == "latency":
            if record.duration is None:
                return None, "the run was not timed"
            return record.duration, " (the run's duration)"
        usage = record.usage
        return usage.get("total_tokens", 0), (f" ({usage.get('prompt_tokens', 0)} prompt, "
                                               f"{usage.get('completion_tokens', 0)} completion)")

    def _show(self, value: float) -> str:
        if self.measure == "cost":
            return f"${value:.10f}".rstrip("0").rstrip(".")  # as precise as a bound may be given
        if self.measure == "latency":
            from ._durations import format_duration

            return format_duration(value)
        return f"{int(value):,}"
