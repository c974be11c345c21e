"""A request's deadline: the most one request may take, from sending it to the last byte of its answer.

`--timeout` bounds each wait for the server (connecting, or the next piece of the answer), so a
server that keeps sending a little (an SSE keep-alive comment, a byte a second) never trips it and
could hold a run forever. The deadline bounds the whole request: the transport reads the answer
piece by piece as it arrives, and the first piece after the deadline ends the request with
APITimeoutError, which the step's retry policy retries like any timeout. A server that goes silent
instead is cut by the wait for the next piece, which the transport never lets exceed the deadline;
so a request ends within twice its deadline at worst, and usually at it.

The defaults differ by kind. A plain answer arrives whole once the model has finished, so its
deadline is how long a model may think: `ANSWER`, 10 minutes, the SDK's own timeout. A stream
shows its progress and may rightly run long (a long answer, a reasoning model), so `STREAM` is
30 minutes. Neither default is ever shorter than `--timeout`: a user who raised the timeout for a
slow model is not cut off by a default they never set.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from ._durations import format_duration
from ._exceptions import APITimeoutError

ANSWER = 600.0
"""A plain (non-streamed) answer's default deadline, in seconds."""

STREAM = 1800.0
"""A streamed answer's default deadline, in seconds."""


class Deadline:
    """When one request must be over; `source` says where the number came from, for the message."""

    def __init__(self, seconds: float, source: str, *, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.source = seconds, source
        self._clock = clock
        self._ends = clock() + seconds

    def passed(self) -> bool:
        return self._clock() >= self._ends

    def error(self) -> APITimeoutError:
        return APITimeoutError(
            f"the request took longer than its deadline of {format_duration(self.seconds)} ({self.source})\n"
            "  hint: the server kept the answer coming, too slowly to finish in time; if the model really "
            "needs longer, raise it with --deadline")

    def pieces(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` as they arrive, until one arrives past the deadline: then APITimeoutError."""
        for chunk in chunks:
            if self.passed():
                raise self.error()
            yield chunk


def deadline_for(*, stream: bool, given: float | None, timeout: float) -> Deadline:
    """The deadline of a request starting now: `given` (the CLI's --deadline) if set, else the default
    for its kind, raised to `timeout` if that is longer."""
    if given is not None:
        return Deadline(given, "--deadline")
    kind, default = ("a stream", STREAM) if stream else ("a plain answer", ANSWER)
    if timeout > default:
        return Deadline(timeout, f"the default for {kind}, raised to --timeout")
    return Deadline(default, f"the default for {kind}; see --deadline")
