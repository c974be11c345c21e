"""Durations as flows write them and as rate-limit headers send them."""

from __future__ import annotations

import pytest

from flowrunner._durations import format_duration, parse_duration, parse_go_duration


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (" 3 s ", 3.0), (2, 2.0), (0.5, 0.5),
])
def test_flow_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "1.5", "-1s", "2 minutes", "1m30s", "ms", True, -3])
def test_bad_flow_durations_say_what_is_accepted(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1.5s", 1.5), ("1h2m3s", 3723.0), ("17ms", 0.017),
    ("0s", 0.0), ("2", 2.0), ("0.5", 0.5),
])
def test_go_durations_from_headers(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "1x", "-", "-5", "-5s", "inf", "nan", "1e400", "1e5s", "1_000", "٣", "٣s",
                                 "9" * 400 + "s", "9" * 400, "1" * 5000 + "ms", "x" * 10_000])
def test_unreadable_go_durations_are_none(bad):
    assert parse_go_duration(bad) is None


def test_format_is_short():
    assert [format_duration(s) for s in (0.25, 1.5, 150, 3600, 5400)] == ["250ms", "1.5s", "2m30s", "1h", "1h30m"]


def test_format_never_fails_on_a_number_past_any_clock():
    assert [format_duration(s) for s in (float("inf"), float("nan"), 1e300, -1.0)] == ["forever"] * 3 + ["0ms"]
