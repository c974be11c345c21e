"""Bodies on their way into a cassette, with every registered secret redacted in what they say.

A secret must not survive in any form a reader (or a replay) could decode: JSON escapes
(`\\u0073\\u006b...`), JSON text inside a JSON string (a tool call's `arguments`), or a streamed
answer cut into pieces, one event holding `sk-CANARYK` and the next `EY-0123...`. So a JSON body is
redacted in its decoded strings, a string that is itself a JSON object or array in its decoded
values, and a stream (server-sent events) channel by channel: the pieces of each choice's content,
refusal and each tool call's arguments are joined, secrets found in the joined text, and the pieces
rewritten (`_secrets.redact_pieces`) so that they still join into the redacted text. Only what
changes is re-encoded: a body with no secret keeps its bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._secrets import active, redact, redact_pieces

# An event ends at a blank line; SSE allows \n, \r\n and \r line ends.
_EVENT_END = re.compile(r"(?<=\n\n)|(?<=\r\n\r\n)|(?<=\r\r)")
_STREAM = re.compile(r"^data:", re.MULTILINE)
_JSON_STARTS = ("{", "[", '"')  # a string that may hold JSON text (an object, an array, a string)


def scrub_body(body: str | bytes) -> str | bytes:
    """`body` (a request's or a response's, str or bytes as vcrpy holds it) with the registered secrets redacted."""
    if not active() or not body:
        return body
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        scrubbed = _scrub_json_text(text)
        if scrubbed is None:
            scrubbed = _scrub_stream(text) if _STREAM.search(text) else redact(text)
    except RecursionError:  # nested deeper than Python's parser goes: the raw text, as a page would be
        scrubbed = redact(text)
    if scrubbed == text:
        return body  # nothing secret: the bytes exactly as they were
    return scrubbed.encode("utf-8") if isinstance(body, bytes) else scrubbed


def _scrub_json_text(text: str) -> str | None:
    """A JSON document's text with its decoded values redacted (`text` itself if none changed); None if not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    scrubbed = scrub_data(data)
    if _dumps(scrubbed) == _dumps(data):
        return text
    return json.dumps(scrubbed, ensure_ascii=False)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def scrub_data(data: Any) -> Any:
    """A copy of JSON data with secrets redacted in every string, a string holding JSON in its decoded values."""
    if isinstance(data, str):
        return _scrub_string(data)
    if isinstance(data, dict):
        return {_scrub_string(k) if isinstance(k, str) else k: scrub_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [scrub_data(item) for item in data]
    return data


def _scrub_string(text: str) -> str:
    redacted = redact(text)
    if text.lstrip()[:1] not in _JSON_STARTS:
        return redacted
    decoded = _scrub_json_text(text)  # `arguments` hide a secret from `redact` with escapes of their own
    return redacted if decoded is None or decoded == text else decoded


def _scrub_stream(text: str) -> str:
    """A server-sent event stream with its events' decoded text redacted, across the events' pieces."""
    blocks = [block for block in _EVENT_END.split(text) if block]
    events = [_Event(block) for block in blocks]
    channels: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}
    for event in events:
        choices = event.data.get("choices") if isinstance(event.data, dict) else None
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                where = ("choice", _key(choice.get("index", 0)))
                for field in ("delta", "logprobs"):
                    _collect(choice.get(field), where + (field,), channels)
    for refs in channels.values():
        pieces = [container[key] for container, key in refs]
        for (container, key), piece in zip(refs, _scrub_channel(pieces)):
            container[key] = piece
    return "".join(event.text() for event in events)


def _scrub_channel(pieces: list[str]) -> list[str]:
    """The pieces of one streamed text, redacted together; a text that is JSON (a call's arguments) hiding a
    secret behind its own escapes is re-encoded redacted into the first piece, the others left empty."""
    pieces = redact_pieces(pieces)
    joined = "".join(pieces)
    decoded = _scrub_string(joined)
    if decoded != joined:
        return [decoded] + [""] * (len(pieces) - 1)
    return pieces


def _collect(node: Any, path: tuple[Any, ...], channels: dict[tuple[Any, ...], list[tuple[Any, Any]]]) -> None:
    """Each string under `node` into the channel of its path: a list of parts with an `index` (tool calls) is
    keyed by that index, any other list's items continue one channel (logprobs' tokens)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        if isinstance(node, dict):
            here = path + (key,)
        elif isinstance(value, dict) and "index" in value:
            here = path + ("#", _key(value["index"]))
        else:
            here = path
        if isinstance(value, str):
            channels.setdefault(here, []).append((node, key))
        else:
            _collect(value, here, channels)


def _key(value: Any) -> Any:
    """`value` usable in a dict key (a choice's or a call's `index`, whatever a server sent)."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


class _Event:
    """One event of a stream (its text up to and including the blank line), and its data if JSON."""

    def __init__(self, block: str) -> None:
        self.block = block
        self.lines = block.splitlines(keepends=True)
        data = [line for line in self.lines if line.startswith("data:")]
        payload = "\n".join(_value(line) for line in data)
        self.original: Any = None
        self.data: Any = None
        if data and payload.strip() != "[DONE]":
            try:
                self.original, self.data = json.loads(payload), json.loads(payload)
            except ValueError:
                pass

    def text(self) -> str:
        """The event as it goes into the cassette: unchanged, or with its data re-encoded redacted."""
        if self.data is None:
            return redact(self.block)
        data = scrub_data(self.data)
        if _dumps(data) == _dumps(self.original):
            return "".join(line if line.startswith("data:") else redact(line) for line in self.lines)
        out, written = [], False
        for line in self.lines:
            if not line.startswith("data:"):
                out.append(redact(line))
            elif not written:  # the data in one line, where its first line was
                out.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                           + line[len(line.rstrip("\r\n")):])
                written = True
        return "".join(out)


def _value(line: str) -> str:
    value = line.rstrip("\r\n")[len("data:"):]
    return value[1:] if value.startswith(" ") else value
