"""What a run shows while it runs: function calls and retries on stderr, streamed answers as they come.

Streamed text goes to stdout (it is the answer); a streamed call's arguments are shown on one
redrawn stderr line when stderr is a terminal, then replaced by the call's usual line once it ran.
"""

from __future__ import annotations

import codecs
import io
import shutil
import sys
from typing import Any, TextIO

from .._json import readable
from .._secrets import StreamRedactor, split_unsure
from ._common import clip, show_call, show_retry

_READABLE = "flowrunner.readable"


def _replace_unencodable(error: UnicodeError) -> tuple[bytes, int]:
    """An encoding error handler: what the stream cannot encode as U+FFFD (a lone surrogate), or as the
    encoding's own replacement ("?") where even that cannot be written."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = readable(error.object[error.start:error.end])
    return text.encode(error.encoding, errors="replace"), error.end


codecs.register_error(_READABLE, _replace_unencodable)


def readable_output() -> None:
    """Make stdout and stderr print what they cannot encode (a model's broken UTF-16, undecodable bytes
    from argv) as a replacement character, never a UnicodeEncodeError. JSON output stays lossless on
    its own: `_json.dumps` writes such characters as escapes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=_READABLE)


class Display:
    """An engine event handler for the CLI; `shown` holds the streamed answers already on screen (redacted)."""

    def __init__(self, *, stream_to: TextIO | None, calls: bool = True, err: TextIO | None = None):
        self.stream_to = stream_to
        self.calls = calls
        self.err = err or sys.stderr
        self.shown: list[str] = []
        self._text: list[str] = []
        self._redactor = StreamRedactor()  # a secret may arrive split across two pieces
        self._arguments: dict[str, str] = {}
        self._live_line = self.err.isatty()

    def __call__(self, event: Any) -> None:
        if event.kind == "delta":
            self._delta(event)
            return
        self.finish()
        if event.kind == "call" and self.calls:
            show_call(event)
        elif event.kind == "retry":
            show_retry(event)

    def finish(self) -> None:
        """End a streamed answer's line (and forget a streamed call's live line)."""
        if self._text and self.stream_to is not None:
            rest = self._redactor.flush()
            self._text.append(rest)
            self.stream_to.write(rest + "\n")
            self.stream_to.flush()
            self.shown.append("".join(self._text))
        self._text = []
        if self._arguments and self._live_line:
            self.err.write("\r\x1b[K")
            self.err.flush()
        self._arguments = {}

    def _delta(self, event: Any) -> None:
        if event.tool is None:
            if self.stream_to is not None:
                shown = self._redactor.feed(event.text)
                self._text.append(shown)
                self.stream_to.write(shown)
                self.stream_to.flush()
            return
        if not (self.calls and self._live_line):
            return
        self._arguments[event.tool] = self._arguments.get(event.tool, "") + event.text
        width = shutil.get_terminal_size().columns - 1
        line = f"  [{event.step}] {event.tool}({self._arguments[event.tool]}"
        shown, _ = split_unsure(line.replace("\n", " "))  # not the start of a secret yet to come
        self.err.write("\r\x1b[K" + clip(shown, max(width, 20)))
        self.err.flush()
