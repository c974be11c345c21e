"""Rate limits the test server enforces, as OpenAI states and applies them.

OpenAI states limits per minute (RPM, TPM) and per day (RPD) but enforces them over shorter
periods: 60 RPM is about one request per second, not 60 at once. `Limits.window` is that period:
in ANY sliding window of `window` seconds at most `max(1, floor(rpm * window / 60))` requests are
accepted, and at most `max(1, floor(tpm * window / 60))` tokens. Tests use windows of a second or
less so they run fast; the default, 60 s, is the literal per-minute reading.

A request's token cost is the `usage.total_tokens` of the answer it gets (the rules' answer, or a
queued `Reply`'s usage, 0 if it has none), known before it is sent, as OpenAI estimates it up
front. A request costing more than the window's whole token budget can never pass: it gets the
"Request too large" 429 at once. RPD counts requests accepted in the last 24 hours, that is, since
the server started, for any test.

What the `x-ratelimit-*` headers say is `Limits.headers`. With "window" (the default) they speak of
the enforcement window: `remaining` is what the window has left now, `reset` when the window is
empty again. With "minute" they speak as OpenAI's do: `limit` is the per-minute limit, `remaining`
counts down over the last 60 s and `reset` says when the minute's budget is whole again, while the
limits are still ENFORCED over `window` (1200 RPM with `window=1.0`: 20 in any second, 1200 in any
minute); a request past the minute's budget is refused too, so the headers never promise what the
server refuses. The per-day request headers (rpd alone) are the same in both.

Rejected requests are not counted. The rejection is OpenAI's 429 (`faults.rate_limited`) with
`retry-after-ms` (and `retry-after`, whole seconds rounded up) saying when a slot frees.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from flowrunner.testing import faults
from flowrunner.testing._reply import Reply

DAY = 86400.0
REJECTION_KINDS = ("rpm", "tpm", "rpd", "too_large")
HEADER_MODES = ("window", "minute")
MINUTE = 60.0


@dataclass(frozen=True)
class Limits:
    """Per-minute (`rpm`, `tpm`) and per-day (`rpd`) limits, enforced over `window` seconds; the
    rate-limit `headers` speak of that window ("window") or of the minute, as OpenAI's do ("minute")."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    window: float = 60.0
    headers: str = "window"

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rpd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1 or None, got {value!r}")
        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window)
                and self.window > 0):
            raise ValueError(f"window must be a number of seconds > 0, got {self.window!r}")
        if self.headers not in HEADER_MODES:
            raise ValueError(f"headers must be one of {', '.join(HEADER_MODES)}, got {self.headers!r}")

    @property
    def requests_per_window(self) -> int | None:
        """How many requests any window of `window` seconds accepts (None: unlimited)."""
        return None if self.rpm is None else _per_window(self.rpm, self.window)

    @property
    def tokens_per_window(self) -> int | None:
        """How many tokens any window of `window` seconds accepts (None: unlimited)."""
        return None if self.tpm is None else _per_window(self.tpm, self.window)


def _per_window(per_minute: int, window: float) -> int:
    return max(1, math.floor(per_minute * window / 60 + 1e-9))  # 100 * 0.6 / 60 is 1, not 0.99..


@dataclass(frozen=True)
class Stats:
    """What the server admitted: counts, 429s by kind (`REJECTION_KINDS`), acceptance times.

    `accepted_at` holds `time.monotonic()` readings, oldest first; only the limit's own 429s are
    counted in `rejected_429`, not 429s a test queued as replies.
    """

    accepted: int
    rejected_429: dict[str, int] = field(default_factory=dict)
    accepted_at: tuple[float, ...] = ()

    @property
    def rejected(self) -> int:
        """All 429s the limits sent."""
        return sum(self.rejected_429.values())

    def most_in(self, seconds: float) -> int:
        """The most requests accepted within any `seconds`-long sliding window."""
        most, first = 0, 0
        for last, at in enumerate(self.accepted_at):
            while self.accepted_at[first] <= at - seconds:
                first += 1
            most = max(most, last - first + 1)
        return most


@dataclass(frozen=True)
class _Failure:
    wait: float  # seconds until this limit would admit the request
    kind: str  # a REJECTION_KINDS entry
    reply: Reply


class Limiter:
    """Sliding windows over accepted requests; it has no lock: the server calls it under its own."""

    def __init__(self, limits: Limits | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens), within the window
        self._minute: deque[tuple[float, int]] = deque()  # the same within the last minute ("minute" headers)
        self._day: deque[float] = deque()  # acceptance times within the last day
        self._accepted_at: list[float] = []
        self._latest = -math.inf  # the latest `now` admitted so far
        self._rejected = dict.fromkeys(REJECTION_KINDS, 0)

    def stats(self) -> Stats:
        return Stats(len(self._accepted_at), dict(self._rejected), tuple(self._accepted_at))

    def admit(self, cost: int, model: str, at: float | None = None) -> tuple[Reply | None, dict[str, str]]:
        """(the 429 if the request is refused, else None; the x-ratelimit-* headers to send).

        `at` is when the request arrived (on this limiter's clock; default: now). Requests are
        counted in the order they are admitted, so one admitted after a later arrival counts as
        arriving with it: the windows stay in order."""
        now = max(self._clock() if at is None else at, self._latest)
        self._latest = now
        limits = self.limits
        if limits is None:
            self._accepted_at.append(now)
            return None, {}
        while self._recent and self._recent[0][0] <= now - limits.window:
            self._recent.popleft()
        while self._minute and self._minute[0][0] <= now - MINUTE:
            self._minute.popleft()
        while self._day and self._day[0] <= now - DAY:
            self._day.popleft()
        refusal = self._refusal(limits, cost, model, now)
        if refusal is None:
            self._recent.append((now, cost))
            if limits.headers == "minute":
                self._minute.append((now, cost))
            self._day.append(now)
            self._accepted_at.append(now)
        else:
            self._rejected[refusal.kind] += 1
        return (None if refusal is None else refusal.reply), self._headers(limits, now)

    def _periods(self, limits: Limits) -> list[tuple[deque[tuple[float, int]], float, int | None, int | None]]:
        """(accepted requests, period in seconds, requests allowed, tokens allowed) for each period
        the limits are enforced over: the window, and with "minute" headers the minute as well."""
        periods = [(self._recent, limits.window, limits.requests_per_window, limits.tokens_per_window)]
        if limits.headers == "minute":
            periods.append((self._minute, MINUTE, limits.rpm, limits.tpm))
        return periods

    def _refusal(self, limits: Limits, cost: int, model: str, now: float) -> _Failure | None:
        """The limit that refuses the request, the one freeing last if several do; else None."""
        budget = limits.tokens_per_window
        if limits.tpm is not None and budget is not None and cost > budget:
            return _Failure(math.inf, "too_large",
                            faults.request_too_large(limit=limits.tpm, requested=cost, model=model))
        failures: list[_Failure] = []
        for recent, period, allowed, tokens in self._periods(limits):
            if limits.rpm is not None and allowed is not None and len(recent) >= allowed:
                wait = recent[len(recent) - allowed][0] + period - now
                failures.append(_Failure(wait, "rpm", _rate_limited(
                    "requests", "min", limits.rpm, len(recent), 1, wait, model)))
            if limits.tpm is not None and tokens is not None:
                used = sum(spent for _, spent in recent)
                if used + cost > tokens:
                    freed, wait = 0, 0.0
                    for at, spent in recent:
                        freed += spent
                        if used - freed + cost <= tokens:
                            wait = at + period - now
                            break
                    failures.append(_Failure(wait, "tpm", _rate_limited(
                        "tokens", "min", limits.tpm, used, cost, wait, model)))
        if limits.rpd is not None and len(self._day) >= limits.rpd:
            wait = self._day[len(self._day) - limits.rpd] + DAY - now
            failures.append(_Failure(wait, "rpd", _rate_limited(
                "requests", "day", limits.rpd, len(self._day), 1, wait, model)))
        return max(failures, key=lambda failure: failure.wait, default=None)

    def _headers(self, limits: Limits, now: float) -> dict[str, str]:
        """OpenAI's six headers: limit as stated, remaining in the window (or minute) now, time to full reset."""
        headers: dict[str, str] = {}
        recent, period, allowed, budget = self._periods(limits)[-1]  # what the headers speak of
        if limits.rpm is not None and allowed is not None:
            newest = recent[-1][0] + period if recent else now
            headers.update(_trio("requests", limits.rpm, allowed - len(recent), newest - now))
        elif limits.rpd is not None:  # no per-minute limit: the request headers describe the day
            newest = self._day[-1] + DAY if self._day else now
            headers.update(_trio("requests", limits.rpd, limits.rpd - len(self._day), newest - now))
        if limits.tpm is not None and budget is not None:
            used = sum(tokens for _, tokens in recent)
            spent = [at for at, tokens in recent if tokens]
            reset = spent[-1] + period - now if spent else 0.0
            headers.update(_trio("tokens", limits.tpm, budget - used, reset))
        return headers


def _trio(kind: str, limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {f"x-ratelimit-limit-{kind}": str(limit),
            f"x-ratelimit-remaining-{kind}": str(max(0, remaining)),
            f"x-ratelimit-reset-{kind}": faults.go_duration(max(0.0, reset))}


def _rate_limited(kind: str, per: str, limit: int, used: int, requested: int, wait: float,
                  model: str) -> Reply:
    wait = max(0.0, wait)
    return faults.rate_limited(kind, retry_after_ms=math.ceil(wait * 1000 - 1e-6),
                               retry_after=max(1, math.ceil(wait - 1e-6)), limit=limit, used=used,
                               requested=requested, per=per, model=model)
