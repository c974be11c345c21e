"""Retry policies: which failures are worth another attempt, how long to wait, and when to give up.

The engine owns retrying (the SDK client is built with `max_retries=0`, or the two layers would
multiply attempts). A failure is retried only when the policy lists it (`on`), it can succeed on a
later attempt (never 400/401/403/404, a used-up quota, or a request larger than the token limit),
attempts remain, and waiting stays within `max_elapsed`. The server's own delay (`retry-after-ms`,
`retry-after`, the `x-ratelimit-reset-*` headers of a 429) wins over the computed backoff.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, TypeVar

from . import _headers
from ._durations import format_duration
from ._exceptions import BILLING_CODES, APIConnectionError, APIError, APITimeoutError, RateLimitError, RunError
from ._record import AttemptRecord

Jitter = Literal["full", "equal", "none"]
T = TypeVar("T")

RETRYABLE = frozenset({"408", "409", "429", "500", "502", "503", "504", "timeout", "connection"})
"""What a policy retries unless told otherwise: statuses by number, plus `timeout` and `connection`."""

@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `initial * multiplier**(n-1)` seconds before retry n, capped at `max`."""

    initial: float = 1.0
    multiplier: float = 2.0
    max: float = 30.0
    jitter: Jitter = "full"
    """`full`: a random wait between 0 and the delay (spreads out clients that failed together);
    `equal`: half the delay plus a random half; `none`: the delay itself."""

    def delay(self, retry: int, rng: random.Random) -> float:
        try:
            base = min(self.max, self.initial * self.multiplier ** (retry - 1))
        except OverflowError:  # a huge multiplier: the cap it would pass anyway
            base = self.max
        if self.jitter == "full":
            return rng.uniform(0, base)
        if self.jitter == "equal":
            return base / 2 + rng.uniform(0, base / 2)
        return base


@dataclass(frozen=True)
class RetryPolicy:
    """How a flow (or one step) lives with failing requests; the defaults suit OpenAI's API."""

    max_attempts: int = 5
    on: frozenset[str] = RETRYABLE
    backoff: Backoff = field(default_factory=Backoff)
    max_elapsed: float = 300.0
    """Never wait past this many seconds since the first attempt; give up instead, and say so."""


NO_RETRY = RetryPolicy(max_attempts=1)


def condition(error: RunError) -> str | None:
    """The name a policy's `on` list uses for this failure (`429`, `timeout`, ...), None if not a request failure."""
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "connection"
    if isinstance(error, APIError):
        return str(error.status)
    return None


def hopeless(error: RunError) -> str | None:
    """Why retrying this failure cannot help (None if it might; "" if it cannot and the message says enough)."""
    if not isinstance(error, APIError):
        return None
    if error.status in (400, 401, 403, 404, 422):
        return ""  # the same request would fail again; the error's own hint says what to change
    if error.status == 429:
        text = str(error).lower()
        if error.code in BILLING_CODES or error.type in BILLING_CODES:
            return "a used-up quota is not retried: waiting does not add credit"
        if "request too large" in text:
            return "a request over the token limit is not retried: it can never pass"
        if "per day" in text or "(rpd)" in text:
            return "the daily request limit is used up: it resets in hours, not within a run"
    return None


def halts_everything(error: BaseException | None) -> bool:
    """Whether a failure is the account's or the key's, not the request's: a bad key (401), a used-up
    quota or daily limit. Every other request would fail alike now, so a batch stops rather than
    writing each of its inputs down as failed."""
    if isinstance(error, RateLimitError):
        return True  # the client-side daily limit
    if not isinstance(error, APIError):
        return False
    return error.status == 401 or (error.status == 429 and bool(hopeless(error))
                                   and "request too large" not in str(error).lower())


def server_delay(error: APIError, now: float | None = None) -> float | None:
    """The wait the server asked for, in seconds: `retry-after-ms`, `retry-after`, or a 429's reset headers.

    A header that cannot be read (see `_headers`) counts as not sent: the backoff decides instead."""
    headers = error.headers
    asked = _headers.seconds(headers.get("retry-after-ms"), unit=0.001)
    if asked is None:
        asked = _headers.seconds(headers.get("retry-after"))
    if asked is None and headers.get("retry-after"):
        asked = _headers.date_wait(headers["retry-after"], time.time() if now is None else now)
    if asked is not None or error.status != 429:
        return asked
    resets = []
    for kind in ("requests", "tokens"):
        remaining = _headers.count(headers.get(f"x-ratelimit-remaining-{kind}"))
        reset = _headers.go_duration(headers.get(f"x-ratelimit-reset-{kind}"))
        # The exhausted budget is the one to wait for; with no (readable) `remaining`, trust any reset given.
        if reset is not None and remaining in (None, 0):
            resets.append(reset)
    return max(resets) if resets else None


def describe(error: RunError) -> str:
    """A one-line summary of a failed attempt, for give-up messages."""
    return str(error).splitlines()[0]


def call_with_retry(send: Callable[[], T], policy: RetryPolicy, attempts: list[AttemptRecord], *,
                    on_retry: Callable[[AttemptRecord], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    rng: random.Random | None = None, slips: int = 0) -> T:
    """`send()` until it succeeds or the policy gives up; every attempt is appended to `attempts`.

    The last error is raised with a note saying why there was no further attempt. The first `slips`
    rate-limit 429s are sent again whatever `max_attempts` and `on` say, and not counted as attempts
    (`max_elapsed` still holds): the engine gives one to a run pacing at a declared rate limit, where
    a 429 means the pacing met the server's window a little early (a busy machine or network delays
    one request, and the next lands close behind it), not that the request failed.
    """
    started = clock()
    number = 0  # attempts counted against max_attempts
    while True:
        number += 1
        try:
            result = send()
        except RunError as error:
            record = AttemptRecord(status=getattr(error, "status", None), error=type(error).__name__,
                                   code=getattr(error, "code", None), message=describe(error))
            attempts.append(record)
            slip = slips > 0 and isinstance(error, APIError) and error.status == 429
            rng = rng or random.Random()  # made on the first failure: most requests never need one
            delay, reason = _decide(error, policy, number, clock() - started, rng, slip=slip)
            if reason is not None:
                raise _with_note(error, reason) from None
            if slip:
                slips, number = slips - 1, number - 1
            record.slept = round(delay, 3)
            if on_retry is not None:
                on_retry(record)
            sleep(delay)
            continue
        attempts.append(AttemptRecord(status=200))
        return result


def _decide(error: RunError, policy: RetryPolicy, number: int, elapsed: float,
            rng: random.Random, *, slip: bool = False) -> tuple[float, str | None]:
    """The delay before the next attempt, or the reason there is none (a `slip` is retried
    whatever the policy's `on` and `max_attempts`, unless hopeless or past `max_elapsed`)."""
    name = condition(error)
    if name is None or isinstance(error, RateLimitError):
        return 0.0, ""  # not a request failure: nothing to say, nothing to retry
    reason = hopeless(error)
    if reason is not None:
        return 0.0, reason
    if name not in policy.on and not slip:
        return 0.0, f"{name} is not in the retry policy's `on` list" if policy.max_attempts > 1 else ""
    if number >= policy.max_attempts and not slip:
        return 0.0, (f"gave up after {number} attempts (retry.max_attempts)" if number > 1 else "")
    asked = server_delay(error) if isinstance(error, APIError) else None
    delay = asked if asked is not None else policy.backoff.delay(number, rng)
    if elapsed + delay > policy.max_elapsed:
        wait = f"the server asked to wait {format_duration(delay)}" if asked is not None else \
            f"the next wait ({format_duration(delay)})"
        return 0.0, (f"gave up after {number} attempt{'s' if number > 1 else ''}: {wait}, which would pass "
                     f"retry.max_elapsed ({format_duration(policy.max_elapsed)})")
    return delay, None


def _with_note(error: RunError, note: str) -> RunError:
    """The error, its message extended with why it was not retried (when there is something to say)."""
    if note:
        first, _, rest = str(error).partition("\n")
        error.args = (f"{first}\n  ({note}){chr(10) + rest if rest else ''}",)
    return error
