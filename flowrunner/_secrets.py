"""Secrets: values that must never be written down, replaced by `[redacted:NAME]` wherever they would be.

The API key, the credentials in a base URL and every value a flow reads from the environment (an
input's `env:`) are registered here when they are read. Run records, error messages, the CLI's call
log and cassettes pass through `redact`, so a secret sent to a server or echoed back by one stays
out of everything flowrunner writes. The registry is process-wide because the environment is.

Texts shorter than `MIN_LENGTH` are not registered: replacing every `1` or `yes` in a record would
destroy it without protecting anything. That holds for numbers too: a short integer read from the
environment (`3`, `42`) would be replaced in every token count, id and answer holding those digits,
and is guessed in a few hundred tries anyway; so a number is registered as text from `MIN_LENGTH`
characters, like a string. A run record's `inputs` (`redact_inputs`) show every value read from the
environment as `[redacted:NAME]`, whatever its type or length: there it is known to be that value.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from typing import Any

MIN_LENGTH = 4
URL_MASK = "****"
"""What a URL's user and password, or a key in its query, are shown as: `[redacted:...]` would not be a
valid URL any more (brackets in the host part are read as an IPv6 address), and cassettes parse theirs."""

_lock = threading.Lock()
_secrets: dict[str, str] = {}  # value -> its replacement
_whole: dict[tuple[str, str], str] = {}  # (input, its value as sorted-key JSON) from the environment -> replacement


def register(value: Any, name: str) -> None:
    """Treat `value` (the value of environment variable or key `name`) as a secret from now on."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    with _lock:
        _secrets[value] = f"[redacted:{name}]"
        # As Python's json writes it by default (non-ASCII as \uXXXX, quotes escaped): text that holds JSON.
        _secrets[json.dumps(value)[1:-1]] = f"[redacted:{name}]"


def register_env_value(input_name: str, text: str, value: Any, name: str) -> None:
    """Treat what environment variable `name` yields for input `input_name` as secret: its text (unless a
    boolean or null), each string leaf of the value read from it (an object's or array's), each number leaf
    as its JSON text, and the whole value as that input in a record (`redact_inputs`). Keys are names, not
    secrets."""
    if value is not None and not isinstance(value, bool):
        register(text.strip() if not isinstance(value, str) else text, name)
    for leaf in _leaves(value):
        register(leaf, name)
    with _lock:
        _whole[(input_name, _canonical(value))] = f"[redacted:{name}]"


def _leaves(value: Any) -> list[str]:
    """Strings and numbers (as JSON text) anywhere in JSON-like data, without recursion (any depth)."""
    leaves, todo = [], [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            leaves.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            leaves.append(json.dumps(item))
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return leaves


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def redact_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A run's inputs to show: an input's value read from the environment whole as `[redacted:NAME]`, the rest
    redacted."""
    with _lock:
        whole = dict(_whole)
    shown: dict[str, Any] = {}
    for name, value in inputs.items():
        try:
            replacement = whole.get((name, _canonical(value))) if whole else None
        except (TypeError, ValueError, RecursionError):  # not JSON data: not read from the environment
            replacement = None
        shown[name] = replacement if replacement is not None else redact_data(value)
    return shown


def active() -> bool:
    """Whether any secret is registered (redaction is skipped entirely when none is)."""
    return bool(_secrets)


def forget_all() -> None:
    """Empty the registry (for tests)."""
    with _lock:
        _secrets.clear()
        _whole.clear()


def _spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, replacement) of every stretch of `text` that is part of a registered secret, in order.

    Overlapping occurrences (of one secret, or of two) make one stretch, replaced by the longest secret
    starting first in it, so no character of any secret is left in the clear.
    """
    with _lock:
        pairs = list(_secrets.items())
    found = []
    for value, replacement in pairs:
        start = text.find(value)
        while start != -1:
            found.append((start, start + len(value), replacement))
            start = text.find(value, start + 1)
    found.sort(key=lambda span: (span[0], span[0] - span[1]))
    merged: list[tuple[int, int, str]] = []
    for start, end, replacement in found:
        if merged and start < merged[-1][1]:
            first, last, kept = merged[-1]
            merged[-1] = (first, max(last, end), kept)
        else:
            merged.append((start, end, replacement))
    return merged


def redact(text: str) -> str:
    """`text` with every registered secret replaced (one inside or overlapping another is covered too)."""
    if not _secrets or not isinstance(text, str):
        return text
    spans = _spans(text)
    if not spans:
        return text
    out, position = [], 0
    for start, end, replacement in spans:
        out += [text[position:start], replacement]
        position = end
    out.append(text[position:])
    return "".join(out)


def redact_pieces(pieces: list[str]) -> list[str]:
    """The pieces of one text (a streamed answer's), rewritten so that together they are the redacted text.

    A secret may be cut across pieces: it is looked for in their concatenation, the piece where it
    starts gets `[redacted:NAME]` and the rest of its characters are dropped from the pieces after.
    """
    text = "".join(pieces)
    spans = _spans(text) if _secrets else []
    if not spans:
        return list(pieces)
    out: list[str] = []
    span, end = 0, 0
    for piece in pieces:
        start, end = end, end + len(piece)
        parts, at = [], start
        while at < end:
            while span < len(spans) and spans[span][1] <= at:
                span += 1
            if span < len(spans) and spans[span][0] <= at:  # inside a secret
                first, last, replacement = spans[span]
                if first == at:
                    parts.append(replacement)
                at = min(last, end)
            else:
                upto = min(spans[span][0], end) if span < len(spans) else end
                parts.append(text[at:upto])
                at = upto
        out.append("".join(parts))
    return out


def split_unsure(text: str) -> tuple[str, str]:
    """(`text` redacted, less its tail; that tail): the tail is what could be the start of a secret
    cut off at the end of `text`, to be held back until more text shows whether it is one."""
    text = redact(text)
    if not _secrets:
        return text, ""
    with _lock:
        values = list(_secrets)
    hold = max((n for value in values for n in range(min(len(value) - 1, len(text)), 0, -1)
                if text.endswith(value[:n])), default=0)
    return text[:len(text) - hold], text[len(text) - hold:]


class StreamRedactor:
    """Redacts text that arrives in pieces (a streamed answer shown live): a secret may be split
    between two pieces, so the tail that could be the start of one is held back until the next piece
    shows whether it is (`feed`), or the stream ends (`flush`)."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> str:
        """What of the text so far can be shown now, redacted."""
        shown, self._pending = split_unsure(self._pending + text)
        return shown

    def flush(self) -> str:
        """The held-back rest, once the stream has ended (it was not a secret after all)."""
        rest, self._pending = self._pending, ""
        return redact(rest)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, strings) with secrets redacted in every string, keys included."""
    if not _secrets:
        return data
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(item) for item in data]
    return data


WHOLE_VALUES = "flowrunner.redact_whole_values"
"""Dataclass field metadata key: the field is a dict of inputs, redacted by `redact_inputs`."""
JSON_TEXTS = "flowrunner.redact_json_texts"
"""Dataclass field metadata key: the field holds strings that may be JSON text (a request's tool call
arguments), whose escapes can hide a secret from `redact`: redacted in their decoded values (`_scrub`)."""


def redact_in_place(obj: Any) -> None:
    """Redact every string field of a dataclass tree (a RunRecord and the records inside it)."""
    if not _secrets and not _whole:
        return
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if field.metadata.get(WHOLE_VALUES) and isinstance(value, dict):
            setattr(obj, field.name, redact_inputs(value))
        elif field.metadata.get(JSON_TEXTS) and isinstance(value, (str, dict, list)):
            from ._scrub import scrub_data  # it builds on this module

            setattr(obj, field.name, scrub_data(value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            redact_in_place(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for item in value:
                redact_in_place(item)
        elif isinstance(value, (str, dict, list)):
            setattr(obj, field.name, redact_data(value))


_SECRET_QUERY = re.compile(r".*(?:key|token|secret|passw(?:or)?d|pwd|sig(?:nature)?|auth\w*|credentials?|code)",
                           re.IGNORECASE)
"""Query parameters whose value is a credential: `key`, `apikey`, `api-key`, `access_token`, `sig`, `code`
(Azure Functions' key)... Masking one that is not costs nothing: the host and path stay as they were."""


def _split_url(url: str) -> tuple[str, str, str, str, str]:
    """(scheme and `://`, userinfo, host and port, path, query) of `url`; the fragment stays in the path's part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, host = netloc.rpartition("@")
    path, question, query = tail.partition("?")
    if "#" in path:  # a fragment before any query: no query
        path, question, query = tail, "", ""
    return scheme + sep, userinfo + at, host, path, question + query


def _query_secrets(query: str) -> list[tuple[str, str]]:
    """(name, value) of the query's parameters that hold a credential."""
    found = []
    for pair in query.lstrip("?").partition("#")[0].split("&"):
        name, _, value = pair.partition("=")
        if value and _SECRET_QUERY.fullmatch(_unquote(name)):
            found.append((name, value))
    return found


def redact_url(url: str) -> str:
    """`url` fit to be written down: its user and password, and the value of each key-like query parameter
    (`?key=`, `?api_key=`, `?token=`...), as `****`; registered secrets elsewhere in it (not in the host,
    which must stay a host) redacted. Still a valid URL with the same host and path."""
    if not isinstance(url, str):
        return url
    scheme, userinfo, host, path, query = _split_url(url)
    if userinfo:
        userinfo = f"{URL_MASK}@"
    if query:
        secret = {name for name, _ in _query_secrets(query)}
        query = "?" + "&".join(f"{pair.partition('=')[0]}={URL_MASK}" if pair.partition("=")[0] in secret else pair
                               for pair in query[1:].split("&"))
    return scheme + userinfo + host + redact(path) + redact(query)


def register_url(url: str | None) -> None:
    """Treat the credentials in `url` (a base URL) as secrets: its user:password (the password alone, and a user
    with no password, which is then a token), and the values of key-like query parameters, as written and decoded."""
    if not url:
        return
    _, userinfo, _, _, query = _split_url(url)
    values = []
    if userinfo:
        user, colon, password = userinfo[:-1].partition(":")
        values += [userinfo[:-1], password] if colon else [user]
    values += [value for _, value in _query_secrets(query)]
    for value in values:
        register(value, "base-url")
        register(_unquote(value), "base-url")


def _unquote(text: str) -> str:
    from urllib.parse import unquote  # only for base URLs: a few ms off every command's start-up

    return unquote(text)
