"""Client-side rate limits: pace requests so a flow run at its account's limits does not trip 429s.

Servers enforce limits over short windows (OpenAI may enforce 60 RPM as one request a second), so
the limiter never spends a minute's budget in a burst: requests start evenly spaced, `60/rpm`
seconds apart, and with `tpm` each request also waits until the tokens of the ones before it have
been paid for at `tpm/60` tokens a second. A request's tokens are estimated before it is sent and
corrected by the response's `usage`. A 429 pauses everyone for the server's delay. A used-up daily
limit (`rpd`) ends the run with RateLimitError instead of a day-long sleep.

Most users declare no limit, and the server states it on every answer: `x-ratelimit-limit-requests`
and `-tokens` are its per-minute limits (RPM, TPM), which it enforces over much shorter periods
(OpenAI's 1200 RPM may be 20 requests in any second). Once an answer has stated them, the requests
that follow are paced as if they had been declared (the limiter's `learned` limits): a declared
limit only where it is lower. Until then the server's limits are unknown, so a run declaring none
sends its first request alone, and the others wait for its answer (`PROBE_WAIT`) rather than
bursting past a limit they cannot know.

With no declared limit of a kind (requests or tokens), or one above what the server states in
`x-ratelimit-limit-*`, the server's `x-ratelimit-remaining-*` and `reset-*` headers set the budget:
the remaining count, less what is still in flight (the server may not have counted those yet), is
spent by the requests that follow, and when it runs out everyone waits for the reset. A declared
limit within the server's ignores that budget: paced at it, the server's window is full after
nearly every request by design, and its reset (the time until the whole budget is back) would idle
the run for nothing.

Pacing counts from when a request really leaves, not from when it was allowed to: `acquire` returns
a Ticket, and the next request's turn waits for that ticket's `departed()` (the transport calls it
once the request is written on the wire). Otherwise a request that leaves late (the SDK's first-call
set-up, a new connection, a busy machine) would arrive squeezed against the next one, and a server
counting requests in a short window would refuse that one. Every request takes a little while from
its turn to the wire (the SDK building it, a busy interpreter: 2 to 7 ms on these machines), so a
turn is given that much early: the lower quartile of the last `LEADS` requests' times (at most a
quarter of the spacing), so that departures, not turns, are spaced by about the limit. At 1200 RPM
those milliseconds were 7% of the 50 ms between requests. A request that gets on the wire faster
than that leaves early by the difference, a fraction of a millisecond, which `MARGIN` covers (2% of
any window: 20 ms a second at 1200 RPM). The median would win another percent of the limit on a
busy machine, but then half the requests leave early, and a server's window met a few 429s in 300. What no client can see (the network, or
the server, holding one request up and not the next) is what `MARGIN` is for; and should a 429 come
anyway, the engine sends that request once more without counting it against the retry policy
(`call_with_retry`'s `slips`).

One limiter is shared by every request to the same server in the process (`shared_limiter`), so
concurrent runs (batches) share one budget.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from . import _headers
from ._durations import format_duration
from ._exceptions import RateLimitError

MARGIN = 0.02
"""Pace 2% under the declared limit: client and server clocks and network delays never line up exactly."""

LONGEST_SERVER_WAIT = 300.0
"""The longest wait for the server's budget to come back that a request sits out by default (the retry
policy's default `max_elapsed`; the engine passes each step's own)."""

PROBE_WAIT = 10.0
"""After a wait for the server (a spent budget's reset, a 429's delay) one request goes first, alone;
the others wait up to this long for its answer to say what the budget is now."""

USAGE_RATIO = (0.25, 4.0)
"""How far answers' usage may correct the token estimates (usage / estimate) when pacing at a tpm: token
estimates are deliberately generous, and a batch of similar requests learns by how much."""

DEPARTURE_WAIT = 2.0
"""The longest the next request waits for the previous one to report its departure before going anyway."""

LEADS = 16
"""How many recent requests' time from turn to wire the next turn's lead is the lower quartile of (none until
there are that many: the first requests of a run open their connections, and take longer)."""

_DAY = 86400.0


@dataclass(frozen=True)
class RateLimit:
    """An account's limits as OpenAI states them: requests per minute and per day, tokens per minute."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None

    def merged(self, override: RateLimit) -> RateLimit:
        """These limits with every limit `override` sets replacing ours (the CLI's `--rate-limit`)."""
        return replace(self, **{f.name: getattr(override, f.name) for f in fields(override)
                                if getattr(override, f.name) is not None})

    def __str__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) is not None]
        return ", ".join(parts) or "none"


def parse_rate_limit(text: str) -> RateLimit:
    """`rpm=60,tpm=10000` (the CLI's form) as a RateLimit; ValueError says what is accepted."""
    values: dict[str, int] = {}
    for part in filter(None, re.split(r"[,\s]+", text)):
        name, sep, number = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in ("rpm", "rpd", "tpm"):
            raise ValueError(f"{part!r}: expected rpm=N, rpd=N or tpm=N (comma-separated)")
        if name in values:
            raise ValueError(f"{name} is given twice")
        try:
            value = int(number)
        except ValueError:
            raise ValueError(f"{part!r}: {name} must be a whole number") from None
        if value < 1:
            raise ValueError(f"{part!r}: {name} must be at least 1")
        values[name] = value
    if not values:
        raise ValueError("expected rpm=N, rpd=N or tpm=N (comma-separated)")
    return RateLimit(**values)


def estimate_tokens(request: dict[str, Any]) -> int:
    """Tokens a request may use, before sending it: about 4 characters a token for what is sent, plus
    the completion cap when one is set. Deliberately generous; the response's `usage` corrects it."""
    sent = {k: request[k] for k in ("messages", "tools", "functions", "response_format") if k in request}
    prompt = math.ceil(len(json.dumps(sent, ensure_ascii=False)) / 4)
    cap = request.get("max_completion_tokens") or request.get("max_tokens") or 0
    return prompt + (cap if isinstance(cap, int) else 0)


class Ticket:
    """A request's turn: `waited` seconds were spent waiting for it; `departed()` says it has left,
    `finished()` that its answer (or error) is in."""

    def __init__(self, limiter: RateLimiter, start: float, waited: float, tokens: int, limit: RateLimit,
                 pace: RateLimit | None = None):
        self._limiter, self.start, self.waited, self.tokens, self.limit = limiter, start, waited, tokens, limit
        self.pace = pace or limit  # what it was paced at: `limit`, or the server's stated limits where lower
        self.paid_from, self.paid_tokens = start, tokens  # its tokens' share of a tpm: from when it left, as used
        self.in_flight = True

    def departed(self) -> None:
        """The request is on its way (idempotent: only the first call counts)."""
        self._limiter._departure(self)

    def finished(self, headers: dict[str, str] | None = None, *, rate_limited: float | None = None) -> None:
        """The request is over: it no longer counts as in flight, and the server's rate-limit `headers`
        on its answer (and a 429's delay, `rate_limited`) are taken in, as `RateLimiter.observe` does.
        Idempotent: only the first call counts; it implies `departed()`."""
        self._limiter._departure(self)
        self._limiter._finish(self, headers or {}, rate_limited)

    def settle(self, usage: dict[str, Any] | None) -> None:
        """Correct the token budget once the answer's `usage` says how many tokens the request really used."""
        self._limiter.settle(self.tokens, usage, self.pace, self)


@dataclass
class _Budget:
    """What the server says is left of one kind (requests or tokens) until `until`."""

    left: int
    until: float


class RateLimiter:
    """Paces requests under a RateLimit and the server's rate-limit headers; safe to share between threads.

    The state (when the next request may go, the server's budgets) belongs to the server; the limits
    belong to each request's run (`acquire(limit=...)`; `limit` here is the default), so runs of
    flows declaring different limits can share the limiter without one overwriting the other's.
    """

    def __init__(self, limit: RateLimit | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.limit = limit or RateLimit()
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._departed = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)
        self._probe: Ticket | None = None  # the one request out after a wait for the server
        self._departing: Ticket | None = None  # the request whose departure the next turn waits for
        self._next_request = 0.0  # earliest start of the next request under rpm
        self._tokens_paid_until = 0.0  # when the tokens of the requests so far are paid for under tpm
        self._last_paying: Ticket | None = None  # the latest request paying for tokens, its own share a floor
        self._usage_ratio = 1.0  # answers' usage / the estimates, lately (what a tpm turn is charged by)
        self._paused_until = 0.0  # the server said: nothing before then
        self._budgets: dict[str, _Budget] = {}  # "requests"/"tokens" -> the server's budget, undeclared kinds only
        self._stated: dict[str, int] = {}  # "requests"/"tokens" -> the per-minute limit the server last stated
        self._heard = False  # an answer (or error) from the server is in: its limits are stated or never will be
        self._leads: deque[float] = deque(maxlen=LEADS)  # recent requests' seconds from turn to wire
        self._in_flight = {"requests": 0, "tokens": 0}  # acquired and not finished
        self._today: deque[float] = deque()  # start times within the last 24 hours, for rpd

    def acquire(self, tokens: int = 0, limit: RateLimit | None = None,
                longest_wait: float = LONGEST_SERVER_WAIT) -> Ticket:
        """Wait until a request of about `tokens` tokens may start under `limit` (default: the limiter's);
        call `departed()` on the ticket as it is sent, `finished()` when it is over. A wait for the
        server longer than `longest_wait` seconds (a spent daily budget, a 429 asking for an hour)
        raises RateLimitError instead of sleeping."""
        limit = limit or self.limit
        with self._lock:
            # After a wait for the server (or before its first answer), one request finds out what its
            # budget (its limits) is now; the rest wait for its answer rather than all arriving together.
            deadline = time.monotonic() + PROBE_WAIT
            while self._probe is not None and time.monotonic() < deadline:
                self._answered.wait(deadline - time.monotonic())
            declared = bool(limit.rpm or limit.tpm)
            pace = self._pace(limit)
            paced = bool(pace.rpm or pace.tpm)
            if paced:
                # The previous request's departure anchors this one's turn (see the module docstring).
                deadline = time.monotonic() + DEPARTURE_WAIT
                while self._departing is not None and time.monotonic() < deadline:
                    self._departed.wait(deadline - time.monotonic())
            now = self._clock()
            self._check_day(now, limit)
            start = max(now, self._paused_until)
            _check_server_wait(start - now, longest_wait)
            start = self._spend_budgets(now, start, {"requests": 1, "tokens": tokens}, longest_wait)
            waits_for_server = start > now
            # Given early by the time most requests (three in four) take at least from turn to wire.
            lead = sorted(self._leads)[LEADS // 4] if len(self._leads) == LEADS else 0.0  # the lower quartile
            if pace.rpm:
                start = max(start, self._next_request - lead)
                self._next_request = start + 60.0 / pace.rpm * (1 + MARGIN)
            charged = tokens
            if pace.tpm:
                # Paid at the estimate as corrected by the answers so far: the next turns are given before
                # this answer's usage is in, and a refund then can no longer bring them earlier.
                charged = max(1, math.ceil(tokens * self._usage_ratio)) if tokens else 0
                start = max(start, self._tokens_paid_until - lead)
                self._tokens_paid_until = start + _token_seconds(charged, pace.tpm)
            if limit.rpd:
                self._today.append(start)
            wait = start - now
            ticket = Ticket(self, start, wait, tokens, limit, pace)
            if pace.tpm:
                ticket.paid_tokens = charged
                self._last_paying = ticket
            self._departing = ticket if paced else None
            # The server's limits are unknown until its first answer: with none declared, one goes first.
            if waits_for_server or not (self._heard or declared or self._probe):
                self._probe = ticket
            self._in_flight["requests"] += 1
            self._in_flight["tokens"] += tokens
        if wait > 0:
            self._sleep(wait)
        return ticket

    def _pace(self, limit: RateLimit) -> RateLimit:
        """What to pace at: the declared `limit`, or the server's stated limit where that is lower."""
        def lower(declared: int | None, stated: int | None) -> int | None:
            return min(declared, stated) if declared and stated else declared or stated

        return replace(limit, rpm=lower(limit.rpm, self._stated.get("requests")),
                       tpm=lower(limit.tpm, self._stated.get("tokens")))

    @property
    def learned(self) -> RateLimit:
        """The per-minute limits the server stated in its latest answers (`x-ratelimit-limit-*`)."""
        with self._lock:
            return RateLimit(rpm=self._stated.get("requests"), tpm=self._stated.get("tokens"))

    def _departure(self, ticket: Ticket) -> None:
        with self._lock:
            if self._departing is not ticket:
                return
            # Leaving later than planned moves the next turn later by as much.
            late = max(0.0, self._clock() - ticket.start)
            ticket.paid_from += late
            # Never more than a quarter of the request's own spacing: a lead is a correction, not a burst.
            spacing = max(60.0 / ticket.pace.rpm if ticket.pace.rpm else 0.0,
                          _token_seconds(ticket.tokens, ticket.pace.tpm) if ticket.pace.tpm else 0.0)
            self._leads.append(min(late, spacing / 4))
            self._next_request += late
            self._tokens_paid_until += late
            self._departing = None
            self._departed.notify_all()

    def _finish(self, ticket: Ticket, headers: dict[str, str], rate_limited: float | None) -> None:
        with self._lock:
            if not ticket.in_flight:
                return
            ticket.in_flight = False
            self._heard = True
            self._in_flight["requests"] -= 1
            self._in_flight["tokens"] -= ticket.tokens
            self._observe(headers, rate_limited, ticket.limit)
            if self._probe is ticket:
                self._probe = None
                self._answered.notify_all()

    def _spend_budgets(self, now: float, start: float, costs: dict[str, int], longest_wait: float) -> float:
        """The start a request gets under the server's budgets (waiting for a reset where one is spent)."""
        for kind, cost in costs.items():
            budget = self._budgets.get(kind)
            if budget is None:
                continue
            if start >= budget.until:  # reset: the budget is unknown until the next answer says
                del self._budgets[kind]
            elif budget.left >= cost:
                budget.left -= cost
            else:
                _check_server_wait(budget.until - now, longest_wait)  # kept: the next request is refused too
                start = budget.until
                del self._budgets[kind]
        return start

    def settle(self, estimated: int, usage: dict[str, Any] | None, limit: RateLimit | None = None,
               ticket: Ticket | None = None) -> None:
        """Correct the token budget once the response says how many tokens the request (`ticket`) really used.

        A refund (fewer tokens than estimated) never brings the next turn within the latest request's own
        tokens of its start: that request was given its turn while this one's estimate still stood, and
        the server counts its tokens from when it arrived."""
        tpm = (limit or self.limit).tpm
        actual = (usage or {}).get("total_tokens")
        if not tpm or not isinstance(actual, int):
            return
        with self._lock:
            if ticket is not None:
                estimated, ticket.paid_tokens = ticket.paid_tokens, actual  # what it was charged, what it used
                if ticket.tokens > 0:
                    ratio = min(max(actual / ticket.tokens, USAGE_RATIO[0]), USAGE_RATIO[1])
                    self._usage_ratio += (ratio - self._usage_ratio) / 4
            self._tokens_paid_until += _token_seconds(actual - estimated, tpm)
            latest = self._last_paying
            if latest is not None and latest.pace.tpm:
                self._tokens_paid_until = max(self._tokens_paid_until,
                                              latest.paid_from + _token_seconds(latest.paid_tokens, latest.pace.tpm))

    def observe(self, headers: dict[str, str], *, rate_limited: float | None = None) -> None:
        """Follow the server's view: pause everyone after a 429 (`rate_limited`: the server's delay),
        and take the budget it reports for each kind with no declared limit, or a declared one above
        the limit it states (see the module docstring).

        A request's own answer is better given to its ticket's `finished()`, which also stops
        counting the request as in flight (the server has counted it in what it says is remaining).
        """
        with self._lock:
            self._heard = True
            self._observe(headers, rate_limited, self.limit)

    def _observe(self, headers: dict[str, str], rate_limited: float | None, limit: RateLimit) -> None:
        """`observe`, with the lock held."""
        now = self._clock()
        rate_limited = _headers.sane_wait(rate_limited)  # a caller's number, but the server's to begin with
        if rate_limited:
            self._paused_until = max(self._paused_until, now + rate_limited)
        for kind, declared in (("requests", limit.rpm), ("tokens", limit.tpm)):
            # An unreadable header (see `_headers`) is as good as none.
            remaining = _headers.count(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = _headers.go_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            stated = _headers.count(headers.get(f"x-ratelimit-limit-{kind}"))
            if stated:  # a limit of 0 is no limit anyone can be paced at: not one a server means
                self._stated[kind] = stated
            if declared and not (stated is not None and stated < declared):
                continue  # our pacing keeps within the server's limit
            if remaining is None or reset is None:
                continue
            # Requests still in flight may not be in the server's count yet: assume they are not.
            self._budgets[kind] = _Budget(remaining - self._in_flight[kind], now + reset)

    def _check_day(self, now: float, limit: RateLimit) -> None:
        while self._today and self._today[0] <= now - _DAY:
            self._today.popleft()
        if limit.rpd and len(self._today) >= limit.rpd:
            frees = format_duration(self._today[0] + _DAY - now)
            raise RateLimitError(
                f"the daily request limit (rpd={limit.rpd}) is used up: {len(self._today)} requests in "
                f"the last 24 hours; the next one frees up in {frees}\n"
                "  hint: run again later (a batch continues with --resume), or raise rpd if your account allows")


def _token_seconds(tokens: int, tpm: int) -> float:
    return tokens * 60.0 / tpm * (1 + MARGIN)


def _check_server_wait(wait: float, longest: float) -> None:
    if wait > longest:
        daily = "; likely a daily limit" if wait > 3600 else ""
        raise RateLimitError(
            f"the server's rate limit is used up and comes back in {format_duration(wait)}, longer than this "
            f"run waits ({format_duration(longest)}, its retry.max_elapsed){daily}\n"
            "  hint: run again later (a batch continues with --resume), or raise retry.max_elapsed")


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(scope: str) -> RateLimiter:
    """The process's one limiter for a server (`scope`: its base URL), created on first use."""
    with _shared_lock:
        if scope not in _shared:
            _shared[scope] = RateLimiter()
        return _shared[scope]
