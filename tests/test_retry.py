"""Retry policies: what is retried, how long the waits are, when and how the engine gives up."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from flowrunner._exceptions import APIConnectionError, APIError, APITimeoutError, ResponseError
from flowrunner._record import AttemptRecord
from flowrunner._retry import Backoff, RetryPolicy, call_with_retry, condition, hopeless, server_delay


def api_error(status: int, code: str | None = None, message: str = "boom", kind: str | None = None,
              **headers: str) -> APIError:
    return APIError(f"HTTP {status}: {message}", status=status, code=code, type=kind,
                    headers={k.replace("_", "-"): v for k, v in headers.items()})


class Clock:
    """A fake clock whose sleeps advance it, so waits are checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run(failures: list[Exception], policy: RetryPolicy, clock: Clock | None = None, **options):
    """call_with_retry over a send() that raises `failures` in turn, then answers 'ok'."""
    clock = clock or Clock()
    queue = list(failures)
    attempts: list[AttemptRecord] = []

    def send() -> str:
        if queue:
            raise queue.pop(0)
        return "ok"

    try:
        result = call_with_retry(send, policy, attempts, sleep=clock.sleep, clock=clock, rng=random.Random(1),
                                 **options)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc, attempts, clock
    return result, attempts, clock


def test_conditions_name_statuses_timeouts_and_connections():
    assert condition(api_error(503)) == "503"
    assert condition(APITimeoutError("slow")) == "timeout"
    assert condition(APIConnectionError("refused")) == "connection"
    assert condition(ResponseError("not json")) is None


@pytest.mark.parametrize("error", [
    api_error(400), api_error(401, "invalid_api_key"), api_error(403), api_error(404),
    api_error(429, "insufficient_quota", kind="insufficient_quota"),
    api_error(429, "rate_limit_exceeded", "Request too large for gpt-4o on tokens per min (TPM): Limit 10000"),
    api_error(429, "rate_limit_exceeded", "Rate limit reached on requests per day (RPD): Limit 200, Used 200"),
])
def test_what_cannot_succeed_is_never_retried_even_if_listed(error):
    policy = RetryPolicy(on=frozenset({"400", "401", "403", "404", "429"}), backoff=Backoff(initial=0.01))
    result, attempts, clock = run([error, error], policy)
    assert result is error
    assert len(attempts) == 1 and clock.slept == []
    assert hopeless(error) is not None


def test_retryable_failures_are_retried_then_succeed_and_every_attempt_is_recorded():
    failures = [api_error(500, "server_error"), api_error(503), APITimeoutError("slow"), APIConnectionError("reset")]
    result, attempts, clock = run(failures, RetryPolicy(max_attempts=5))
    assert result == "ok"
    assert [a.status for a in attempts] == [500, 503, None, None, 200]
    assert [a.error for a in attempts] == ["APIError", "APIError", "APITimeoutError", "APIConnectionError", None]
    assert [a.slept for a in attempts[:-1]] == [round(s, 3) for s in clock.slept]


def test_full_jitter_stays_under_the_exponential_cap():
    policy = RetryPolicy(max_attempts=6, backoff=Backoff(initial=1, multiplier=2, max=5, jitter="full"))
    _, _, clock = run([api_error(500)] * 5, policy)
    for n, slept in enumerate(clock.slept, 1):
        assert 0 <= slept <= min(5, 2 ** (n - 1))


def test_no_jitter_is_exact():
    policy = RetryPolicy(max_attempts=5, backoff=Backoff(initial=0.5, multiplier=3, max=4, jitter="none"))
    _, _, clock = run([api_error(502)] * 4, policy)
    assert clock.slept == [0.5, 1.5, 4, 4]


def test_the_servers_delay_wins_over_backoff():
    failures = [api_error(429, retry_after_ms="250"), api_error(503, retry_after="2"),
                api_error(429, x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests="1.5s",
                      x_ratelimit_remaining_tokens="900", x_ratelimit_reset_tokens="6m0s")]
    _, attempts, clock = run(failures, RetryPolicy(backoff=Backoff(initial=100, jitter="none"), max_elapsed=1000))
    assert clock.slept == pytest.approx([0.25, 2.0, 1.5])  # tokens were not the exhausted budget


def test_retry_after_as_an_http_date():
    when = formatdate(1_000_030.0, usegmt=True)
    assert server_delay(api_error(503, retry_after=when), now=1_000_000.0) == pytest.approx(30.0)


def test_gives_up_after_max_attempts_and_says_so():
    error = api_error(503, message="overloaded")
    result, attempts, _ = run([error] * 5, RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.01)))
    assert result is error and len(attempts) == 3
    assert "gave up after 3 attempts (retry.max_attempts)" in str(error)


def test_never_sleeps_past_max_elapsed_and_says_so():
    error = api_error(429, retry_after="40")
    result, attempts, clock = run([error], RetryPolicy(max_elapsed=30))
    assert result is error and clock.slept == [] and len(attempts) == 1
    assert "the server asked to wait 40s, which would pass retry.max_elapsed (30s)" in str(error)


def test_a_status_left_out_of_on_is_not_retried():
    error = api_error(500)
    result, attempts, _ = run([error], RetryPolicy(on=frozenset({"503"})))
    assert result is error and len(attempts) == 1
    assert "500 is not in the retry policy's `on` list" in str(error)


def test_one_attempt_means_no_retry_and_no_note():
    error = api_error(500, message="oops")
    result, attempts, _ = run([error], RetryPolicy(max_attempts=1))
    assert result is error and str(error) == "HTTP 500: oops" and len(attempts) == 1


@pytest.mark.parametrize("error, halts", [
    (api_error(401, "invalid_api_key"), True),
    (api_error(429, "insufficient_quota", "You exceeded your current quota"), True),
    (api_error(429, "rate_limit_exceeded", "Rate limit reached for requests per day (RPD): Limit 200"), True),
    (api_error(429, "rate_limit_exceeded", "Request too large for gpt-4 on tokens per min (TPM)"), False),
    (api_error(429, "rate_limit_exceeded", "Rate limit reached for requests per min (RPM)"), False),
    (api_error(400, "invalid_value"), False),
    (api_error(500), False),
    (APIConnectionError("refused"), False),
])
def test_what_halts_a_whole_batch(error, halts):
    from flowrunner._exceptions import RateLimitError
    from flowrunner._retry import halts_everything

    assert halts_everything(error) is halts
    assert halts_everything(RateLimitError("the daily request limit (rpd=3) is used up")) is True
    assert halts_everything(None) is False


def test_a_huge_multiplier_stops_at_the_cap_and_an_infinite_retry_after_is_ignored():
    assert Backoff(initial=1.0, multiplier=1e300, max=30.0, jitter="none").delay(5, random.Random(0)) == 30.0
    assert server_delay(api_error(503, retry_after="inf")) is None
    assert server_delay(api_error(503, retry_after_ms="nan", retry_after="2")) == 2.0


def test_a_slip_429_is_sent_again_without_counting_as_an_attempt():
    # A run pacing at a declared limit gets one 429 free: its pacing met the server's window early.
    limited = api_error(429, "rate_limit_exceeded", "Rate limit reached for requests per min (RPM)",
                        kind="requests", retry_after_ms="20")
    clock = Clock()
    attempts: list[AttemptRecord] = []
    queue: list[Exception] = [limited]

    def send() -> str:
        if queue:
            raise queue.pop(0)
        return "ok"

    assert call_with_retry(send, RetryPolicy(max_attempts=1), attempts, sleep=clock.sleep, clock=clock,
                           slips=1) == "ok"
    assert [a.status for a in attempts] == [429, 200] and clock.slept == [pytest.approx(0.02)]
    # One only: a second 429 counts as usual (a declared limit above the server's cannot loop).
    queue[:] = [limited, limited]
    with pytest.raises(APIError):
        call_with_retry(send, RetryPolicy(max_attempts=1), [], sleep=clock.sleep, clock=clock, slips=1)


@pytest.mark.parametrize("error", [
    api_error(429, "insufficient_quota", "You exceeded your current quota", kind="insufficient_quota"),
    api_error(429, "rate_limit_exceeded", "Rate limit reached for requests per day (RPD): Limit 200"),
    api_error(503), api_error(429, retry_after="600"),  # the last: past max_elapsed
])
def test_no_other_failure_is_a_slip(error):
    result, attempts, _ = run([error], RetryPolicy(max_attempts=1, max_elapsed=60), slips=1)
    assert result is error and len(attempts) == 1


def test_a_request_that_succeeds_makes_no_random_generator(monkeypatch):
    # Seeding one from the OS costs about 10 us: a tenth of the engine's own time per request.
    import flowrunner._retry as retry_module

    made = []
    real = random.Random
    monkeypatch.setattr(retry_module.random, "Random", lambda *args: made.append(args) or real(*args))
    assert call_with_retry(lambda: "ok", RetryPolicy(), [], sleep=lambda _: None) == "ok"
    assert made == []
    failures = iter([APIConnectionError("down")])

    def send() -> str:
        for error in failures:
            raise error
        return "ok"

    assert call_with_retry(send, RetryPolicy(), [], sleep=lambda _: None) == "ok"
    assert len(made) == 1  # the backoff's jitter still draws from one
