"""flowrunner/view/_timeline.py: a run record laid out on a time axis."""

from __future__ import annotations

import copy
import math

import pytest

from .conftest import with_timing
from flowrunner._record import without_timing
from flowrunner.view._timeline import build, ticks


def test_a_timed_run_has_a_bar_for_the_run_each_step_round_and_call(weather_record):
    timeline = build(with_timing(weather_record))
    assert timeline is not None
    kinds = [bar.kind for bar in timeline.bars]
    assert kinds == ["run", "step", "round", "call", "call", "round"]
    run, step, first, boston, tokyo, second = timeline.bars
    assert run.start == 0 and run.label == "weather" and run.duration == pytest.approx(timeline.total)
    # round 1: 0.3 s waiting for the limiter, a 500 (0.1 s), 0.4 s of back-off, the answer (0.1 s)
    assert first.duration == pytest.approx(0.9)
    assert [(s.kind, round(s.end - s.start, 6)) for s in first.segments] == [
        ("rate_limit", 0.3), ("failed", 0.1), ("retry", 0.4), ("attempt", 0.1)]
    assert first.failed is False and first.tokens == 74 and first.cost == pytest.approx(0.00012)
    assert first.round_id == "round-0-0" and second.round_id == "round-0-1"
    assert boston.label == "get_current_weather(location=Boston)" and boston.duration == pytest.approx(0.05)
    assert boston.round_id == "round-0-0" and tokyo.start == pytest.approx(boston.end)
    assert step.tokens == 184 and second.start == pytest.approx(tokyo.end, abs=1e-6)


def test_a_record_without_timing_has_no_timeline(weather_record):
    assert build(without_timing(weather_record)) is None
    assert build({}) is None


@pytest.mark.parametrize("bad", ["soon", math.nan, math.inf, -5.0, True, None, [1], {"a": 1}])
def test_hostile_timing_values_draw_nothing_and_raise_nothing(weather_record, bad):
    record = with_timing(weather_record)
    round_ = record["steps"][0]["rounds"][0]
    for key in ("started", "sent", "latency", "waited_rate_limit", "waited_retry", "ttft", "cost"):
        round_[key] = bad
    for attempt in round_["attempts"]:
        attempt["started"] = attempt["duration"] = bad
    timeline = build(record)
    assert timeline is not None
    assert [bar.kind for bar in timeline.bars] == ["run", "step", "call", "call", "round"]


def test_rounds_without_a_start_begin_at_their_first_attempt_less_the_limiter_wait(weather_record):
    record = with_timing(weather_record)
    round_ = copy.deepcopy(record["steps"][0]["rounds"][0])
    expected = round_["started"] - record["started"]
    del round_["started"]
    record["steps"][0]["rounds"][0] = round_
    bar = next(b for b in build(record).bars if b.kind == "round")
    assert bar.start == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("total, expected", [(1.42, (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4)),
                                             (7.0, (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)),
                                             (0.03, (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03))])
def test_ticks_fall_on_round_numbers(total, expected):
    assert ticks(total) == pytest.approx(expected)


def test_a_real_runs_waits_are_laid_where_they_happened():
    """The weather flow against the test server enforcing one request a second, its first request failing:
    the retry's back-off follows the failed attempt, and any wait for the limiter is the gap before a request
    left that no back-off explains."""
    from .conftest import ROOT, run_flow
    from flowrunner.testing import Limits, faults

    record = run_flow(ROOT / "flows" / "weather.yaml", {"question": "What's the weather in Boston?"},
                      faults.server_error(), limits=Limits(rpm=60, window=1.0))
    timeline = build(record)
    assert timeline.total == pytest.approx(record["duration"], abs=1e-6)
    assert all(0 <= bar.start <= bar.end <= timeline.total + 1e-6 for bar in timeline.bars)
    rounds = [bar for bar in timeline.bars if bar.kind == "round"]
    first, second = rounds
    kinds = [segment.kind for segment in first.segments]
    assert kinds[kinds.index("failed") + 1] == "retry" and kinds[-1] == "attempt"
    retry = next(s for s in first.segments if s.kind == "retry")
    assert retry.end - retry.start == pytest.approx(record["steps"][0]["rounds"][0]["attempts"][0]["slept"])
    for bar, round_ in zip(rounds, record["steps"][0]["rounds"]):
        limiter = [s.end - s.start for s in bar.segments if s.kind == "rate_limit"]
        assert sum(limiter) == pytest.approx(round_["waited_rate_limit"], abs=0.003)
        assert bar.end == pytest.approx(round_["sent"] + round_["latency"] - record["started"], abs=1e-6)
