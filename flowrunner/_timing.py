"""Timing for the run record: when each part of a run began and how long it took.

A moment is a unix time (`time.time()`), so records from different processes line up; a duration
is measured on `time.monotonic()`, so a clock set back mid-run cannot make one negative. Durations
are kept to the microsecond. The engine asks for these in a few lines: a `Stopwatch` for a run, a
step, a function call; a `RoundClock` for a round, its turns from the rate limiter, its attempts'
exchanges with the server and its retry back-off.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, TypeVar

from ._record import AttemptRecord, RoundRecord

T = TypeVar("T")


class _Timed(Protocol):
    started: float | None
    duration: float | None


def _seconds(value: float) -> float:
    return round(max(value, 0.0), 6)


class Stopwatch:
    """Started when made; `stamp(record)` sets the record's `started` and `duration` (up to now)."""

    def __init__(self) -> None:
        self.started, self._start = time.time(), time.monotonic()

    def elapsed(self) -> float:
        return _seconds(time.monotonic() - self._start)

    def stamp(self, record: _Timed) -> None:
        record.started, record.duration = self.started, self.elapsed()


class RoundClock:
    """Times one round (`RoundRecord`): made as the round begins, before its first turn from the rate limiter."""

    def __init__(self, record: RoundRecord):
        self.record = record
        record.started, record.waited_rate_limit, record.waited_retry = time.time(), 0.0, 0.0
        self._exchanges: list[tuple[float, float | None] | None] = []  # per attempt: (sent, duration)
        self._sent = 0.0  # monotonic, the current attempt's

    def acquire(self, pacer: Any, *args: Any, **kwargs: Any) -> Any:
        """`pacer.acquire(...)` (a rate limiter's turn), its wait added to the round's `waited_rate_limit`;
        it begins an attempt."""
        self._exchanges.append(None)
        start = time.monotonic()
        try:
            return pacer.acquire(*args, **kwargs)
        finally:
            self.record.waited_rate_limit = _seconds((self.record.waited_rate_limit or 0.0)
                                                     + time.monotonic() - start)

    def exchange(self, complete: Callable[..., T], request: dict[str, Any],
                 on_chunk: Callable[[dict[str, Any]], None] | None,
                 on_sent: Callable[[], None] | None) -> T:
        """`complete(request, on_chunk, on_sent)`, a transport's request: timed from when the request left
        (when the transport reports it, if asked to; else as it is handed to the transport) to the answer."""
        record = self.record
        record.sent, record.latency, record.ttft = time.time(), None, None
        self._sent = time.monotonic()
        answered = False

        def departed() -> None:
            if not answered:
                record.sent, self._sent = time.time(), time.monotonic()
            assert on_sent is not None
            on_sent()

        def first_chunk(chunk: dict[str, Any]) -> None:
            if record.ttft is None:
                record.ttft = _seconds(time.monotonic() - self._sent)
            if on_chunk is not None:
                on_chunk(chunk)

        streamed = bool(request.get("stream"))
        try:
            return complete(request, first_chunk if streamed else on_chunk, departed if on_sent else None)
        finally:
            answered = True
            record.latency = _seconds(time.monotonic() - self._sent)
            if self._exchanges:
                self._exchanges[-1] = (record.sent, record.latency)

    def sleep(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        """`sleep`, its time added to the round's `waited_retry` (the retry policy's back-off)."""
        def timed(seconds: float) -> None:
            start = time.monotonic()
            try:
                sleep(seconds)
            finally:
                self.record.waited_retry = _seconds((self.record.waited_retry or 0.0) + time.monotonic() - start)

        return timed

    def settle(self, attempts: list[AttemptRecord]) -> None:
        """Give the round's attempt records their exchanges' times (an attempt refused by the rate limiter
        had none: it keeps None)."""
        for attempt, exchange in zip(attempts, self._exchanges):
            if exchange is not None and attempt.started is None:
                attempt.started, attempt.duration = exchange
