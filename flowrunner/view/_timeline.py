"""A run record laid out on a time axis: the bars `flowrun view` draws, as plain data (no HTML here).

Every bar and shaded wait is a span of seconds from the run's start. The record's timing fields
(`started`, `sent` as unix seconds; `duration`, `latency`, `ttft`, the waits and `slept` as seconds)
may each be missing or None: a record from before they existed has none, so `build` returns None and
the page says there is no timeline; a record with some has bars for what is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

BarKind = Literal["run", "step", "round", "call"]
SegmentKind = Literal["rate_limit", "retry", "attempt", "failed"]


@dataclass(frozen=True)
class Segment:
    """A part of a round's bar: a wait (rate limiter, retry back-off) or one HTTP attempt."""

    kind: SegmentKind
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Bar:
    """One row of the timeline: a run, step, round or function call, from `start` to `end` seconds."""

    kind: BarKind
    label: str
    start: float
    end: float
    failed: bool = False
    tokens: int | None = None
    cost: float | None = None
    round_id: str | None = None
    """For a round (and its calls): the id of its details on the page (`round-0-1`: step 0, round 1)."""
    segments: tuple[Segment, ...] = ()
    ttft: float | None = None
    """Time to first token, seconds from the run's start, for a streamed round."""
    waited_rate_limit: float | None = None
    waited_retry: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Timeline:
    """The bars of one run and the axis they sit on (0 to `total` seconds)."""

    total: float
    bars: tuple[Bar, ...]
    ticks: tuple[float, ...] = field(default=())

    def percent(self, seconds: float) -> float:
        """Where `seconds` falls on the axis, 0-100."""
        return max(0.0, min(100.0, seconds / self.total * 100.0)) if self.total > 0 else 0.0


def _number(value: Any) -> float | None:
    """A finite, non-negative number from the record, else None (hostile or missing values draw nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _tokens(usage: Any) -> int | None:
    value = usage.get("total_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class _Clock:
    """Turns the record's instants into seconds from the run's start."""

    def __init__(self, origin: float):
        self.origin = origin

    def at(self, value: Any) -> float | None:
        instant = _number(value)
        return None if instant is None else instant - self.origin


def _origin(record: dict[str, Any]) -> float | None:
    """The run's start: its own `started`, else the earliest instant any step or round has."""
    instants = [_number(record.get("started"))]
    for step in _dicts(record.get("steps")):
        instants.append(_number(step.get("started")))
        for round_ in _dicts(step.get("rounds")):
            instants += [_number(round_.get("started")), _number(round_.get("sent"))]
    known = [instant for instant in instants if instant is not None]
    if _number(record.get("started")) is not None:
        return _number(record.get("started"))
    return min(known) if known else None


def _round_bar(clock: _Clock, round_: dict[str, Any], label: str, round_id: str) -> Bar | None:
    """A round from its start to its answer. With timed attempts, the limiter's wait (`waited_rate_limit`) is
    laid into the gaps before attempts that no retry back-off explains (an attempt is timed from when its
    request left), each ending as its request left."""
    start = clock.at(round_.get("started"))
    sent = clock.at(round_.get("sent"))
    latency = _number(round_.get("latency"))
    waited_limit = _number(round_.get("waited_rate_limit"))
    waited_retry = _number(round_.get("waited_retry"))
    attempts = _dicts(round_.get("attempts"))
    timed = []
    for number, attempt in enumerate(attempts, 1):
        began, took = clock.at(attempt.get("started")), _number(attempt.get("duration"))
        if began is not None and took is not None:
            timed.append((number, attempt, began, took))
    if start is None:
        starts = [began for _, _, began, _ in timed] + ([sent] if sent is not None else [])
        if not starts:
            return None
        start = min(starts) - (waited_limit or 0.0)
    segments: list[Segment] = []
    cursor, limiter_left = start, waited_limit or 0.0
    for number, attempt, began, took in timed:
        waited = min(began - cursor, limiter_left)  # the limiter lets a request go just before it leaves
        if waited > 1e-3:
            segments.append(Segment("rate_limit", began - waited, began, f"rate-limit wait {waited:.3g} s"))
            limiter_left -= waited
        status = attempt.get("status")
        what = f"attempt {number}: " + (f"HTTP {status}" if isinstance(status, int) else "no answer")
        segments.append(Segment("failed" if attempt.get("error") is not None else "attempt", began, began + took, what))
        cursor = began + took
        slept = _number(attempt.get("slept"))
        if slept:
            segments.append(Segment("retry", cursor, cursor + slept, f"retry wait {slept:.3g} s"))
            cursor += slept
    ends = [cursor]
    if sent is not None:
        ends.append(sent + (latency or 0.0))
    if not timed:
        # Attempts without their own timing: the limiter's wait opens the round, the retry waits end before
        # the request that got through.
        if waited_limit:
            segments.append(Segment("rate_limit", start, start + waited_limit, f"rate-limit wait {waited_limit:.3g} s"))
            ends.append(start + waited_limit)
        if waited_retry and sent is not None:
            segments.append(Segment("retry", max(start, sent - waited_retry), sent, f"retry waits {waited_retry:.3g} s"))
    ttft = _number(round_.get("ttft"))
    return Bar("round", label, start, max(ends), failed=bool(attempts) and attempts[-1].get("error") is not None,
               tokens=_tokens(round_.get("usage")), cost=_number(round_.get("cost")), round_id=round_id,
               segments=tuple(segments), ttft=None if ttft is None or sent is None else sent + ttft,
               waited_rate_limit=waited_limit, waited_retry=waited_retry)


def _span(clock: _Clock, item: dict[str, Any]) -> tuple[float, float] | None:
    start = clock.at(item.get("started"))
    duration = _number(item.get("duration"))
    return None if start is None or duration is None else (start, start + duration)


def call_label(call: dict[str, Any]) -> str:
    """`name(arguments)` shortened to fit a row."""
    arguments = call.get("arguments")
    if isinstance(arguments, dict):
        shown = ", ".join(f"{key}={value!r}" if not isinstance(value, str) else f"{key}={value}"
                          for key, value in arguments.items())
    else:
        shown = str(call.get("raw_arguments") or "")
    text = f"{call.get('name')}({shown})"
    return text if len(text) <= 80 else text[:79] + "…"


def build(record: dict[str, Any]) -> Timeline | None:
    """The timeline of a run record, or None when it holds no timing at all."""
    origin = _origin(record)
    if origin is None:
        return None
    clock = _Clock(origin)
    bars: list[Bar] = []
    run_span = _span(clock, record)
    if run_span is not None:
        bars.append(Bar("run", str(record.get("flow") or "run"), *run_span, failed=record.get("status") == "failed",
                        tokens=_tokens(record.get("usage")), cost=_number(record.get("cost"))))
    for s, step in enumerate(_dicts(record.get("steps"))):
        step_span = _span(clock, step)
        if step_span is not None:
            bars.append(Bar("step", f"step {step.get('id')}", *step_span, failed=step.get("status") == "failed",
                            tokens=_tokens(step.get("usage")), cost=_number(step.get("cost"))))
        for r, round_ in enumerate(_dicts(step.get("rounds"))):
            round_id = f"round-{s}-{r}"
            bar = _round_bar(clock, round_, f"round {r + 1}", round_id)
            if bar is not None:
                bars.append(bar)
            for call in _dicts(round_.get("calls")):
                call_span = _span(clock, call)
                if call_span is not None:
                    bars.append(Bar("call", call_label(call), *call_span, failed=call.get("error") is not None,
                                    round_id=round_id))
    if not bars:
        return None
    total = max(max(bar.end for bar in bars), 1e-3)
    return Timeline(total, tuple(bars), ticks(total))


def ticks(total: float, most: int = 8) -> tuple[float, ...]:
    """Round instants (1, 2 or 5 times a power of ten apart) from 0 up to `total`, at most `most` + 1."""
    if total <= 0:
        return (0.0,)
    raw = total / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = int(math.floor(total / step + 1e-9))
    return tuple(round(i * step, 9) for i in range(count + 1))
