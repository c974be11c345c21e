"""How two JSON values differ, said for a person: the first difference in one line, and a unified diff of
the two pretty-printed. A cassette miss (recorded against now) and `flowrun runs diff` (run A against run B)
say it in their own words (`Wording`); the walk and the diff are the same.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Wording:
    """Format strings for `first_difference`: `{path}`, the two values (`{a}`, `{b}`, shortened) and, for
    lists of different lengths, `{na}` and `{nb}`."""

    only_a: str
    only_b: str
    lengths: str
    values: str


def first_difference(a: Any, b: Any, path: str, wording: Wording) -> str:
    """Where two JSON values first differ, in one line (`messages[1].content: recorded 'a', now 'b'`)."""
    while a != b:
        if isinstance(a, dict) and isinstance(b, dict):
            key = next(k for k in sorted(set(a) | set(b), key=str) if k not in a or k not in b or a[k] != b[k])
            if key not in b:
                return wording.only_a.format(path=f"{path}.{key}", a=short(a[key]), b="")
            if key not in a:
                return wording.only_b.format(path=f"{path}.{key}", a="", b=short(b[key]))
            a, b, path = a[key], b[key], f"{path}.{key}"
        elif isinstance(a, list) and isinstance(b, list):
            index = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
            if index is None:
                return wording.lengths.format(path=path, na=len(a), nb=len(b))
            a, b, path = a[index], b[index], f"{path}[{index}]"
        else:
            break
    return wording.values.format(path=path, a=short(a), b=short(b))


def diff_lines(a: Any, b: Any, *, context: int, width: int, limit: int, max_chars: int | None = None) -> list[str]:
    """A unified diff (`-` a, `+` b) of two JSON values pretty-printed with sorted keys (a string as its own
    lines), without line numbers (those of pretty-printed JSON mean nothing to a reader); each line cut at
    `width` characters, the whole at `limit` lines. Texts longer together than `max_chars` are not compared
    (difflib's time grows with their size): one line says so."""
    pretty_a, pretty_b = _pretty(a), _pretty(b)
    if max_chars is not None:
        size_a, size_b = sum(map(len, pretty_a)), sum(map(len, pretty_b))
        if size_a + size_b > max_chars:
            return [f"(too large to compare line by line: {size_a:,} and {size_b:,} characters)"]
    lines: list[str] = []
    for line in list(difflib.unified_diff(pretty_a, pretty_b, lineterm="", n=context))[2:]:
        if line.startswith("@@"):
            if lines:
                lines.append("  ...")
            continue
        lines.append(line[:width] + ("..." if len(line) > width else ""))
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return lines


def _pretty(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines()
    from ._json import dumps  # never raises, whatever a stored record holds

    return dumps(value, indent=2, sort_keys=True).splitlines()


def short(value: Any, limit: int = 80) -> str:
    """A value in at most `limit` characters: a string as its repr, anything else as JSON."""
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
