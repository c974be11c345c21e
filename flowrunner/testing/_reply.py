"""What the test server sends back: a scripted `Reply`, possibly late or broken on purpose.

A reply is data; `flowrunner.testing.server` decides which one a request gets and how to send it,
and `flowrunner.testing.faults` builds the realistic ones (OpenAI's errors, broken connections).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = "application/json"
ERROR_JSON = "application/json; charset=utf-8"  # what OpenAI sends with its error bodies

# How a reply can fail on purpose, as the client sees it:
FAULTS = {
    "drop": "close the connection without sending any response",
    "reset": "abort the connection with a TCP RST (SO_LINGER on, 0 s) without a response",
    "truncate": "send the status and headers (full Content-Length), half the body, then close "
                "(a paced stream: the events in its first half, cut mid-event, and no last chunk)",
    "hang": "send nothing until the server stops, so a client with a timeout times out",
    "trickle": "send the status and headers, then never the body: a keep-alive every `chunk_delay` seconds "
               "(1 s if unset) until the server stops, each its own HTTP chunk (an SSE comment line "
               "`: keep-alive` for a text/event-stream reply, else one space, which JSON allows), so a "
               "client's read timeout never fires",
}


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a dict body is sent as JSON, a str or bytes body as it is (SSE, HTML).

    `delay` seconds pass before anything is sent; `fault` (one of `FAULTS`) breaks the exchange.
    `chunk_delay` paces a stream: each server-sent event of the body goes out as its own HTTP
    chunk (`Transfer-Encoding: chunked`), that many seconds after the one before, so a client can
    see the first event long before the last; None takes the server's `chunk_delay` for a
    `text/event-stream` body, 0 sends the body whole with a Content-Length.
    """

    status: int = 200
    body: dict[str, Any] | list[Any] | str | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    fault: str | None = None
    chunk_delay: float | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of: "
                             f"{', '.join(FAULTS)} (or None for a normal reply)")
        check_seconds("delay", self.delay)
        if self.chunk_delay is not None:
            check_seconds("chunk_delay", self.chunk_delay)

    @classmethod
    def from_recorded(cls, path: str | Path) -> Reply:
        """A reply from a recorded real response (`tests/data/real-responses/*.json`)."""
        recorded = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(status=recorded["status"], body=recorded["body"], headers=recorded["headers"])

    def media_type(self) -> str:
        """The content type: explicit, else from `headers`, else guessed from the body."""
        given = self.content_type or {k.lower(): v for k, v in self.headers.items()}.get("content-type")
        if given:
            return given
        if isinstance(self.body, (dict, list)):
            return JSON
        return "text/plain; charset=utf-8" if isinstance(self.body, str) else "application/octet-stream"

    def payload(self) -> tuple[bytes, str]:
        """The body as bytes, and its `media_type()`."""
        if isinstance(self.body, (dict, list)):
            data = json.dumps(self.body).encode()
        else:
            data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, self.media_type()

    def total_tokens(self) -> int:
        """`usage.total_tokens` of the body (JSON, or the last SSE event with a usage), else 0."""
        if isinstance(self.body, dict):
            return _usage_tokens(self.body)
        if isinstance(self.body, (str, bytes)):
            text = self.body.decode(errors="replace") if isinstance(self.body, bytes) else self.body
            for line in reversed(text.splitlines()):
                if line.startswith("data:") and '"usage"' in line:
                    try:
                        tokens = _usage_tokens(json.loads(line[5:]))
                    except ValueError:
                        continue
                    if tokens:
                        return tokens
        return 0


def check_seconds(name: str, value: object) -> None:
    """ValueError unless `value` is a usable wait: a finite number of seconds >= 0."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")


# An event ends at a blank line; SSE allows \n, \r\n and \r line ends.
_EVENT_END = re.compile(rb"(?<=\n\n)|(?<=\r\n\r\n)|(?<=\r\r)")


def sse_events(payload: bytes) -> list[bytes]:
    """`payload` cut after each blank line, so each server-sent event (with its blank line) is one
    piece and the pieces join back exactly; text after the last blank line is a piece of its own."""
    return [piece for piece in _EVENT_END.split(payload) if piece]


def _usage_tokens(body: Any) -> int:
    usage = body.get("usage") if isinstance(body, dict) else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else 0


def error_reply(status: int, message: str, kind: str = "invalid_request_error",
                param: str | None = None, code: str | None = None, **headers: str) -> Reply:
    """An error in OpenAI's shape, with the content type OpenAI sends it with."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status, body, headers, content_type=ERROR_JSON)
