"""The numbers a server states in its headers (a retry delay, a rate-limit budget), read as hostile input.

A header is written by whoever is in between (a proxy, a gateway, a buggy server), so every reader
here returns a sane value or None, meaning "the server did not say", and never raises: a header
nobody can read is ignored, never fatal. Python's own `int()` and `float()` are too generous
for this (they take `inf`, `nan`, `1e400`, `1_000`, `٣`, and 4301 digits raise), so only ASCII
digits are read, at most `LONGEST_TEXT` characters of them, and a wait longer than a week
(`_durations.LONGEST`, what a flow may give) is no wait anyone meant: it is ignored too.
"""

from __future__ import annotations

import math
import re

from ._durations import LONGEST, parse_go_duration

LONGEST_TEXT = 64
"""The longest header value read at all: a number, a duration or an HTTP date is far shorter."""

_COUNT = re.compile(r"[0-9]{1,18}")  # 18 digits: past any budget, and no int() digit limit
_NUMBER = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18})?")


def count(text: str | None) -> int | None:
    """A count (`x-ratelimit-remaining-requests: 42`): ASCII digits only, else None."""
    text = _short(text)
    return int(text) if text is not None and _COUNT.fullmatch(text) else None


def seconds(text: str | None, *, unit: float = 1.0) -> float | None:
    """A wait given as a plain number of `unit`s (`retry-after: 2`, `retry-after-ms: 250` with unit=0.001)."""
    text = _short(text)
    if text is None or not _NUMBER.fullmatch(text):
        return None
    return sane_wait(float(text) * unit)


def go_duration(text: str | None) -> float | None:
    """A wait given as a Go duration (`x-ratelimit-reset-requests: 6m0s`), as `parse_go_duration` reads it."""
    text = _short(text)
    return None if text is None else sane_wait(parse_go_duration(text))


def date_wait(text: str | None, now: float) -> float | None:
    """The wait until an HTTP date (`retry-after: Wed, 21 Oct 2015 07:28:00 GMT`) from `now` (a
    `time.time()`); a date already past is no wait at all."""
    text = _short(text)
    if text is None:
        return None
    from email.utils import parsedate_to_datetime  # rare, and 6 ms on every `flowrun validate` otherwise

    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return sane_wait(max(0.0, when - now))


def sane_wait(value: float | None) -> float | None:
    """`value` if it is a wait a server may mean (finite, 0 to a week), else None."""
    if value is None or not math.isfinite(value) or not 0.0 <= value <= LONGEST:
        return None
    return value


def _short(text: str | None) -> str | None:
    """The value without surrounding spaces, None when absent, empty or too long to be a number."""
    if not isinstance(text, str) or len(text) > LONGEST_TEXT:
        return None
    return text.strip(" \t") or None
