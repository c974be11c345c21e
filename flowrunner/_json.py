"""JSON from outside, read with bounds; JSON for records, written without fail.

Everything flowrunner parses from outside goes through `loads`: a server's answers and stream events,
the model's tool-call arguments and structured output, a batch's input and results lines. Python's
own parser recurses once per level of nesting (so 100,000 levels raise RecursionError), refuses
integers of over 4,300 digits with a bare ValueError, and accepts NaN and Infinity, which are not
JSON. `loads` turns each of these into a `JSONError`, which callers report as that answer's,
argument's or line's problem. Real answers nest a handful of levels, so `MAX_DEPTH` is far above
them and far below where Python's recursion limit is near.

Everything flowrunner writes as JSON for people and files (`--json`, batch result lines, function
results sent to the model) goes through `dumps`, which never raises: a lone UTF-16 surrogate (which
models do emit, `"\\ud800"`, and undecodable bytes in argv become) is written as its `\\udXXX`
escape, so the text stays valid UTF-8 and reads back the same; a value nested deeper than
`MAX_DUMP_DEPTH` or holding itself is cut there; a key or value JSON has no form for is written as text.

Where such text cannot be escaped, `readable` replaces a lone surrogate with U+FFFD: in requests
(`sendable`: the SDK encodes them as UTF-8 without escapes) and on a terminal (the CLI's stdout).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

MAX_DEPTH = 100
"""Levels of nesting `loads` accepts (`[]` is one level, `{"a": [1]}` two)."""

MAX_DUMP_DEPTH = 200
"""Levels of nesting `dumps` writes: a record holds values read by `loads` a few levels down."""

_SURROGATE = re.compile("[\\ud800-\\udfff]")


class JSONError(ValueError):
    """Text that is not JSON flowrunner reads: not JSON at all, nested too deep, or a number out of range.

    `msg` says what is wrong, `pos` where (when known); `str()` says both."""

    def __init__(self, msg: str, pos: int | None = None):
        self.msg, self.pos = msg, pos
        super().__init__(msg if pos is None else f"{msg} at position {pos}")


def loads(text: str | bytes) -> Any:
    """`json.loads` for text from outside: JSONError for anything it should not or cannot hold."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except JSONError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONError(exc.msg, exc.pos) from None
    except UnicodeDecodeError as exc:
        raise JSONError(f"not UTF-8 text ({exc.reason})", exc.start) from None
    except RecursionError:
        raise JSONError(f"nested deeper than {MAX_DEPTH} levels, the most flowrunner reads") from None
    except ValueError:  # only the integer digits limit is left (sys.set_int_max_str_digits)
        raise JSONError(long_number(text if isinstance(text, str) else text.decode("utf-8", "replace"))) from None
    # The parser does not count levels; only text with more brackets than the limit can go past it.
    brackets = text.count("[") + text.count("{") if isinstance(text, str) else \
        text.count(b"[") + text.count(b"{")
    if brackets > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise JSONError(f"nested deeper than {MAX_DEPTH} levels, the most flowrunner reads")
    return value


def long_number(text: str) -> str:
    """Why Python refused to read an integer in `text` (its json and yaml both raise a bare ValueError):
    `a number of 5,000 digits, more than the 4,300 a number may have`."""
    digits = max((len(run) for run in re.findall(r"\d+", text)), default=0)
    limit: int = getattr(sys, "get_int_max_str_digits", lambda: 4300)()  # 0: no limit, never refused
    return f"a number of {digits:,} digits, more than the {limit:,} a number may have"


def _no_constant(name: str) -> Any:
    raise JSONError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JSONError(f"the number {text[:40]} is too large")
    return number


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than `limit` levels in `value` (without recursing: a value
    that holds itself is infinitely deep)."""
    stack = [(value, 1)] if isinstance(value, (dict, list, tuple)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def dumps(value: Any, *, indent: int | None = None, sort_keys: bool = False,
          separators: tuple[str, str] | None = None) -> str:
    """JSON text of `value` (non-ASCII as it is), for records and results; never raises (see the module)."""
    if _deeper_than(value, MAX_DUMP_DEPTH):
        value = _cut(value, MAX_DUMP_DEPTH, set())
    try:
        text = json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys, separators=separators,
                          default=str)
    except (TypeError, ValueError):  # a key JSON has none for (a tuple), or keys that do not sort together
        text = json.dumps(_cut(value, MAX_DUMP_DEPTH, set()), ensure_ascii=False, indent=indent,
                          sort_keys=sort_keys, separators=separators, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def readable(text: str) -> str:
    """`text` as valid Unicode, for a terminal or a request: surrogate pairs joined, a lone one as U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def sendable(value: Any) -> Any:
    """A request with every string `readable`, keys included: the SDK encodes it as UTF-8 without
    escaping anything, and a lone surrogate cannot be encoded (its JSON escape would be lossless,
    but the SDK writes none). `value` itself when it holds none, which one pass of the C encoder
    tells (walking every request in Python cost a tenth of a millisecond each)."""
    try:
        if not _SURROGATE.search(json.dumps(value, ensure_ascii=False)):
            return value
    except (TypeError, ValueError, RecursionError):  # not JSON (the SDK will say so); walk it
        pass
    return _sendable(value)


def _sendable(value: Any) -> Any:
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, dict):
        return {_sendable(k): _sendable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sendable(item) for item in value]
    return value


def _cut(value: Any, levels: int, holding: set[int]) -> Any:
    """A copy of `value` JSON can hold: `levels` deep at most, no value inside itself, keys as text."""
    if not isinstance(value, (dict, list, tuple)):
        return value
    if levels <= 0:
        return f"(cut: nested deeper than {MAX_DUMP_DEPTH} levels)"
    if id(value) in holding:
        return "(cut: a value that holds itself)"
    holding.add(id(value))
    try:
        if isinstance(value, dict):
            return {_key(k): _cut(v, levels - 1, holding) for k, v in value.items()}
        return [_cut(item, levels - 1, holding) for item in value]
    finally:
        holding.discard(id(value))


def _key(key: Any) -> str:
    """A key as JSON writes it (`1`, `true`, `null`), or as text when JSON has no form for it."""
    if isinstance(key, str):
        return key
    return json.dumps(key) if key is None or isinstance(key, (int, float)) else str(key)
