"""How numbers read on the page: durations, dollars, tokens, instants. Pure functions, used as template filters."""

from __future__ import annotations

import math
import time
from typing import Any


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def seconds(value: Any) -> str:
    """`0.41 ms`, `420 ms`, `1.23 s`, `2m 05s`; an unknown duration is `–`."""
    number = _finite(value)
    if number is None:
        return "–"
    if number == 0:
        return "0 ms"
    if number < 0.01:
        return f"{number * 1000:.2g} ms"
    if number < 1:
        return f"{number * 1000:.0f} ms"
    if number < 60:
        return f"{number:.2f} s"
    minutes, rest = divmod(int(round(number)), 60)
    return f"{minutes}m {rest:02d}s"


def dollars(value: Any) -> str:
    """`$1.23`, `$0.0123`, `$0.000123`; a cost nobody knows (no price for the model) is `–`."""
    number = _finite(value)
    if number is None:
        return "–"
    if number == 0:
        return "$0"
    if number >= 1:
        return f"${number:,.2f}"
    if number >= 0.01:
        return f"${number:.4f}"
    return f"${number:.6f}".rstrip("0")


def tokens(value: Any) -> str:
    """`1,234 tok`; unknown is `–`."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "–"
    return f"{value:,} tok"


def instant(value: Any) -> str:
    """A unix time as local `2026-11-28 15:04:05`; unknown is `–`."""
    number = _finite(value)
    if number is None or number < 0 or number > 32503680000:  # after the year 3000: not a time
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(number))
