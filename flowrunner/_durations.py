"""Durations, as flows write them (`250ms`, `1.5s`, `2m`) and as servers send them (`6m0s`, `20ms`).

Kept apart because the schema, the retry policy, function timeouts and the rate-limit headers all
read durations, and each must agree on what `1m` means.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# One number and one unit; `ms` is tried before `m`.
_FLOW_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*")  # matched whole (fullmatch)
# Go's time.Duration.String(): one or more number+unit parts, e.g. `1h2m3.5s`, `6m0s`, `20ms`. ASCII
# digits only: `\d` (and float()) would also read `٣` as 3.
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_PLAIN_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_LONGEST_GO_TEXT = 64  # `2540400h10m10.000000000s`, Go's longest, is 24 characters
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, **_UNITS}

LONGEST = 7 * 86400.0
"""The longest duration a flow may give (a week): anything longer is a slip, and past what a timer holds."""


def parse_duration(value: str | int | float) -> float:
    """Seconds from a flow's duration: a number of seconds, or a string like `250ms`, `1.5s`, `2m`, `1h`.

    Raises ValueError with the accepted forms; the schema checks durations before this runs.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 250ms, 1.5s, 2m, 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        seconds = float(value)
    else:
        match = _FLOW_DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration: write a number with a unit, like 250ms, 1.5s, 2m, 1h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= LONGEST:  # also NaN
        raise ValueError(f"{value!r} is longer than a duration may be (at most a week, 168h)")
    return seconds


def parse_go_duration(text: str) -> float | None:
    """Seconds from a rate-limit reset header (`1s`, `6m0s`, `20ms`, `1.5s`, `1h2m3s`), None if unreadable:
    not a duration, negative, longer than any Go duration is written, or too big to be finite.
    `_headers.go_duration` also refuses a wait longer than a week."""
    text = text.strip(" \t")
    if not text or len(text) > _LONGEST_GO_TEXT:
        return None
    if _PLAIN_SECONDS.fullmatch(text):
        seconds = float(text)  # some servers send plain seconds
    else:
        parts = _GO_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(number) * _GO_UNITS[unit] for number, unit in parts)
    return seconds if math.isfinite(seconds) else None


def format_duration(seconds: float) -> str:
    """A short human form for messages: `250ms`, `1.5s`, `2m30s`, `3h`; `forever` past any clock."""
    if not seconds < 1e15:  # also NaN and infinity, which round() cannot take: a message must not crash
        return "forever"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
