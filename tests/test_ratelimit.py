"""The client-side rate limiter: smooth pacing, token budgets, the server's headers, the daily limit."""

from __future__ import annotations

import threading
import time

import pytest

from flowrunner._exceptions import RateLimitError
from flowrunner._ratelimit import LEADS, MARGIN, RateLimit, RateLimiter, estimate_tokens, parse_rate_limit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(**limits: int) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(RateLimit(**limits), clock=clock, sleep=clock.sleep), clock


def starts(lim: RateLimiter, clock: Clock, n: int, tokens: int = 0) -> list[float]:
    times = []
    for _ in range(n):
        lim.acquire(tokens).finished()  # sent and answered (with no rate-limit headers)
        times.append(clock.now - 1000.0)
    return times


def test_rpm_spaces_requests_evenly_never_in_a_burst():
    lim, clock = limiter(rpm=60)
    times = starts(lim, clock, 5)
    gap = 1.0 * (1 + MARGIN)
    assert times == pytest.approx([0, gap, 2 * gap, 3 * gap, 4 * gap])


def test_a_slow_request_does_not_earn_a_burst_later():
    lim, clock = limiter(rpm=60)
    lim.acquire().departed()
    clock.now += 10  # a long pause: the next requests are still spaced, not sent together
    assert starts(lim, clock, 3) == pytest.approx([10, 10 + 1.02, 10 + 2.04])


def test_no_limits_means_no_waiting():
    lim, clock = limiter()
    lim.acquire().finished()  # the server's first answer states no limit
    assert starts(lim, clock, 100) == [0.0] * 100


def test_tpm_pays_for_each_requests_tokens_before_the_next():
    lim, clock = limiter(tpm=6000)  # 100 tokens a second
    times = starts(lim, clock, 3, tokens=200)
    assert times == pytest.approx([0, 2 * (1 + MARGIN), 4 * (1 + MARGIN)])


def test_usage_corrects_the_estimate():
    lim, clock = limiter(tpm=6000)
    lim.acquire(100).departed()
    lim.settle(100, {"total_tokens": 400})  # the answer was longer than estimated: 300 more to pay for
    lim.acquire(100).departed()
    assert clock.now - 1000 == pytest.approx(4 * (1 + MARGIN))


def test_an_earlier_requests_refund_never_lets_the_next_land_within_the_last_ones_tokens():
    # Estimates of 15 tokens, answers of 9. A's refund comes in after B was given its turn: it must not
    # pull C's turn to within B's own 9 tokens of B (it did: C left 30 ms after B, and a server counting
    # tokens in 1-second windows answered 429).
    lim, clock = limiter(tpm=6000)  # 100 tokens a second
    a = lim.acquire(15)
    a.departed()
    b = lim.acquire(15)  # A is still in flight
    b.departed()
    a.finished()
    a.settle({"total_tokens": 9})
    b.finished()
    b.settle({"total_tokens": 9})
    c = lim.acquire(15)
    assert c.start - b.start >= 9 * 60 / 6000 * (1 + MARGIN) - 1e-9
    assert b.start - a.start == pytest.approx(15 * 60 / 6000 * (1 + MARGIN))  # B paid A's estimate, as it had to


def test_token_turns_are_charged_as_the_answers_so_far_corrected_the_estimates():
    # Answers using 60% of each estimate: the next turns, given before their own answers are in,
    # are charged about 60% too, instead of the whole estimate (which paced a batch at 77% of its tpm).
    lim, clock = limiter(tpm=6000)  # 100 tokens a second
    for _ in range(12):
        ticket = lim.acquire(100)
        ticket.departed()
        ticket.finished()
        ticket.settle({"total_tokens": 60})
    a = lim.acquire(100)
    a.departed()
    b = lim.acquire(100)  # a's answer is not in yet
    assert b.start - a.start == pytest.approx(0.6 * (1 + MARGIN), rel=0.05)


def test_server_headers_pause_everyone_until_the_reset():
    lim, clock = limiter()
    lim.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"})
    ticket = lim.acquire()
    assert clock.now - 1000 == pytest.approx(1.5)
    ticket.finished({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "30s"})
    assert lim.acquire().waited == 0


def test_a_429_pauses_everyone_for_the_servers_delay():
    lim, clock = limiter()
    lim.observe({}, rate_limited=2.0)
    assert lim.acquire().waited == pytest.approx(2.0)


def test_a_used_up_daily_limit_is_an_error_not_a_day_long_sleep():
    lim, clock = limiter(rpd=3)
    starts(lim, clock, 3)
    with pytest.raises(RateLimitError, match=r"daily request limit \(rpd=3\) is used up.*frees up in 24h"):
        lim.acquire()
    clock.now += 86400
    assert lim.acquire().waited == 0


def test_threads_share_one_budget():
    lim = RateLimiter(RateLimit(rpm=1200))  # real clock: 51 ms apart
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        lim.acquire().departed()
        with lock:
            times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.045, gaps


def test_estimate_counts_what_is_sent_and_the_completion_cap():
    request = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    small = estimate_tokens(request)
    assert 100 <= small <= 130
    assert estimate_tokens({**request, "max_tokens": 500}) == small + 500
    assert estimate_tokens({**request, "tools": [{"type": "function", "function": {"name": "f" * 400}}]}) > small + 90


def test_parse_rate_limit_and_merge():
    assert parse_rate_limit("rpm=3, rpd=200") == RateLimit(rpm=3, rpd=200)
    assert RateLimit(rpm=3, tpm=100).merged(RateLimit(rpm=60)) == RateLimit(rpm=60, tpm=100)
    for bad in ("rpm", "rpx=3", "rpm=0", "rpm=fast", ""):
        with pytest.raises(ValueError, match="rpm"):
            parse_rate_limit(bad)


def test_a_request_that_leaves_late_moves_the_next_turn_as_late():
    lim, clock = limiter(rpm=60)
    first = lim.acquire()
    clock.now += 0.5  # the request takes half a second to get on the wire (SDK start-up, a new connection)
    first.departed()
    lim.acquire().departed()
    # Counted from the real departure: a server sees the two a full interval apart, not squeezed.
    assert clock.now - 1000 == pytest.approx(0.5 + 1.0 * (1 + MARGIN))


def test_the_next_turn_waits_for_the_previous_departure():
    lim = RateLimiter(RateLimit(rpm=6000))  # real clock: 10 ms apart
    first = lim.acquire()
    started: list[float] = []
    thread = threading.Thread(target=lambda: started.append(lim.acquire().waited))
    thread.start()
    time.sleep(0.2)
    assert started == []  # still waiting: the first request has not left
    first.departed()
    thread.join(2)
    assert started and started[0] <= 0.02


def test_with_no_declared_limit_the_servers_remaining_count_is_spent_then_waited_out():
    lim, clock = limiter()
    lim.observe({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "1.5s"})
    tickets = [lim.acquire() for _ in range(3)]
    assert [t.waited for t in tickets] == [0, 0, pytest.approx(1.5)]
    tickets[2].finished()  # an answer with no headers: the budget is unknown until the next one says
    assert lim.acquire().waited == 0


def test_requests_in_flight_are_taken_off_the_servers_remaining_count():
    lim, clock = limiter()
    lim.acquire().finished()  # the server's first answer states no limit
    in_flight = [lim.acquire() for _ in range(3)]
    done = in_flight.pop()
    done.finished()
    # Two requests are still out: the server may not have counted them in its "3 remaining".
    lim.observe({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"})
    assert [lim.acquire().waited for _ in range(2)] == [0, pytest.approx(2.0)]


def test_the_servers_token_budget_counts_each_requests_estimate():
    lim, clock = limiter()
    lim.observe({"x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "6s"})
    assert lim.acquire(300).waited == 0
    assert lim.acquire(300).waited == pytest.approx(6.0)  # 200 left: not enough for 300


def test_a_declared_limit_is_paced_not_paused_by_the_servers_spent_budget():
    lim, clock = limiter(rpm=60)
    lim.acquire().finished()
    lim.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "59s"})
    assert lim.acquire().waited == pytest.approx(1.0 * (1 + MARGIN))  # its turn under rpm, not the reset


def test_a_declared_limit_above_the_servers_stated_one_follows_the_servers_budget():
    lim, clock = limiter(rpm=6000)  # the account really has 600
    lim.acquire().finished()
    lim.observe({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "1",
                 "x-ratelimit-reset-requests": "3s"})
    first = lim.acquire()
    first.finished()
    second = lim.acquire()
    assert first.waited == pytest.approx(0.01 * (1 + MARGIN))  # paced as declared while the budget lasts
    assert clock.now - 1000 == pytest.approx(3.0)  # then the server's reset


def test_a_server_budget_that_comes_back_only_in_hours_ends_the_run_instead_of_sleeping():
    lim, clock = limiter()
    lim.observe({"x-ratelimit-limit-requests": "200", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "23h59m10s"})  # a server enforcing only a daily limit
    for _ in range(2):  # and again: the spent budget is not forgotten by refusing once
        with pytest.raises(RateLimitError, match=r"comes back in 23h59m.*longer than this run waits \(5m, its retry.max_elapsed\); likely a daily limit"):
            lim.acquire()
    assert clock.now == 1000.0  # no sleep at all
    clock.now += 86400  # the next day
    lim.observe({}, rate_limited=3600.0)  # a 429 asking for an hour is no different
    with pytest.raises(RateLimitError, match="comes back in 1h"):
        lim.acquire()


def test_after_a_wait_for_the_server_one_request_goes_first_and_its_answer_sets_the_pace():
    # A server allowing one request a second, eight threads: at the reset they must not all arrive at once.
    lim = RateLimiter()
    lim.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"})
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        ticket = lim.acquire()
        with lock:
            starts.append(time.monotonic())
        time.sleep(0.02)  # the request
        ticket.finished({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "100ms"})

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 4 and min(gaps) >= 0.1, gaps  # each after the previous one's answer and reset


def test_a_429_delay_within_the_steps_max_elapsed_is_waited_by_everyone_beyond_it_ends_the_run():
    lim, clock = limiter()
    lim.observe({}, rate_limited=150.0)  # Retry-After: 150 on another worker's request
    first = lim.acquire(longest_wait=300.0)
    assert first.waited == pytest.approx(150.0)
    first.finished({}, rate_limited=150.0)  # refused again
    with pytest.raises(RateLimitError, match=r"comes back in 2m30s, longer than this run waits \(1m"):
        lim.acquire(longest_wait=60.0)


def test_each_request_is_paced_by_its_own_runs_limit_on_the_shared_state():
    lim, clock = limiter()  # the limiter's own limit: none
    slow, fast = RateLimit(rpm=30), RateLimit()
    lim.acquire(limit=slow).finished()
    lim.acquire(limit=fast).finished()  # another flow's run, with no limit: it does not wait...
    assert clock.now == 1000.0
    assert lim.acquire(limit=slow).waited == pytest.approx(2.0 * (1 + MARGIN))  # ...nor lift the first run's


# -- limits learned from the server's headers ------------------------------------------------------

STATES_60_RPM = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
                 "x-ratelimit-reset-requests": "1s"}


def test_the_servers_stated_limit_paces_as_if_declared():
    lim, clock = limiter()  # nothing declared
    lim.acquire().finished(STATES_60_RPM)
    assert lim.learned == RateLimit(rpm=60)
    gap = 1.0 * (1 + MARGIN)
    assert starts(lim, clock, 3) == pytest.approx([0, gap, 2 * gap])  # spread evenly, not spent in a burst


def test_a_declared_limit_wins_when_lower_and_the_stated_one_when_it_is():
    for declared, gap in ((30, 2.0), (600, 1.0)):
        lim, clock = limiter(rpm=declared)
        lim.acquire().finished(STATES_60_RPM)
        first = lim.acquire()
        first.finished(STATES_60_RPM)
        assert lim.acquire().waited == pytest.approx(gap * (1 + MARGIN)), declared


def test_a_learned_token_limit_paces_tokens_and_a_spent_budget_still_waits():
    lim, clock = limiter()
    lim.acquire(100).finished({"x-ratelimit-limit-tokens": "6000", "x-ratelimit-remaining-tokens": "5900",
                               "x-ratelimit-reset-tokens": "1s"})
    assert lim.learned == RateLimit(tpm=6000)  # 100 tokens a second
    assert starts(lim, clock, 2, tokens=200) == pytest.approx([0, 2 * (1 + MARGIN)])
    # The server says the minute is spent (another client on the account): its reset is waited for.
    lim.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "30s"})
    assert lim.acquire().waited == pytest.approx(30.0)


def test_with_nothing_declared_the_first_request_goes_alone_until_the_server_states_its_limits():
    lim = RateLimiter()
    first = lim.acquire()
    second: list[float] = []
    thread = threading.Thread(target=lambda: second.append(lim.acquire().waited))
    thread.start()
    thread.join(0.3)
    assert second == []  # it waits for the first one's answer...
    first.finished({"x-ratelimit-limit-requests": "1200", "x-ratelimit-remaining-requests": "1199",
                    "x-ratelimit-reset-requests": "50ms"})
    thread.join(5)
    assert len(second) == 1 and lim.learned == RateLimit(rpm=1200)  # ...and is paced by what it said


def test_a_turn_comes_early_by_the_time_most_requests_take_to_leave():
    lim, clock = limiter(rpm=60)
    for n in range(LEADS):
        ticket = lim.acquire()
        clock.now += (0.002, 0.004, 0.005, 0.009)[n % 4]  # the SDK building the request before it is on the wire
        ticket.departed()
    left = clock.now
    lim.acquire()
    # Its turn: an interval after the last departure, less the lower quartile of those times (4 ms):
    # its departure, not its turn, is about an interval after the last one.
    assert clock.now - left == pytest.approx(1.0 * (1 + MARGIN) - 0.004)


@pytest.mark.parametrize("limits, learned", [({"rpm": 600}, RateLimit(rpm=600)),
                                             ({"tpm": 600 * 20}, RateLimit(tpm=600 * 20))])
def test_a_batch_with_no_declared_limit_learns_it_from_the_headers_and_paces(make_flow, tmp_path, limits, learned):
    # As OpenAI does: the headers state 600 RPM (or a TPM of 600 requests' tokens) and count down over
    # the minute, while the server enforces 10 requests (or their tokens) in any second.
    from flowrunner import Engine, OpenAITransport
    from flowrunner._batch import BatchRunner
    from flowrunner.testing import ChatServer, Limits

    flow = make_flow("name: ask\nmodel: m\ninputs:\n  question: {type: string}\nsteps:\n  - id: answer\n"
                     "    messages:\n      - {role: user, content: \"{{ inputs.question }}\"}\n")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(f'{{"question": "Question number {n}?"}}\n' for n in range(40)))
    with ChatServer(limits=Limits(**limits, window=1.0, headers="minute"), latency=0.02) as server, \
            OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter())
        summary = BatchRunner(engine, flow, inputs, tmp_path / "out.jsonl", concurrency=8).run()
        stats = server.stats
    assert (summary.progress.succeeded, summary.progress.failed) == (40, 0)
    assert engine.limiter.learned == learned
    # Spending the stated 600 as fast as 8 workers can got a 429 for most requests past the tenth.
    assert stats.rejected <= 1, stats.rejected_429
