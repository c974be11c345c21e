"""The clock the test server's Batch API runs on: real time sped up, or moved by hand.

`now()` is a Unix time in seconds: the wall time the clock was made at, plus the real time since
then times `speed`, plus every `advance`. With `speed` 1 a batch takes as long as its simulated
phases say; with 1000 a simulated hour passes in 3.6 s; with 0 nothing moves until a test calls
`advance`, so it can stop a batch in any phase and look at it.
"""

from __future__ import annotations

import math
import threading
import time


class BatchClock:
    """Simulated Unix time for batches: `(real seconds elapsed) * speed + advanced`."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        check_speed(speed)
        self._speed = float(speed)
        self._lock = threading.Lock()
        self._origin = time.time() if start is None else float(start)
        self._real = time.monotonic()
        self._advanced = 0.0

    @property
    def speed(self) -> float:
        """Simulated seconds per real second (0: only `advance` moves the clock)."""
        return self._speed

    def now(self) -> float:
        """The simulated Unix time."""
        with self._lock:
            return self._origin + (time.monotonic() - self._real) * self._speed + self._advanced

    def advance(self, seconds: float) -> float:
        """Move the clock `seconds` forward (never back); returns the new time."""
        if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance takes a number of seconds >= 0, got {seconds!r}")
        with self._lock:
            self._advanced += float(seconds)
        return self.now()


def check_speed(speed: object) -> None:
    """ValueError unless `speed` is a finite number >= 0."""
    if not (isinstance(speed, (int, float)) and not isinstance(speed, bool)
            and math.isfinite(speed) and speed >= 0):
        raise ValueError(f"the batch clock's speed must be a number >= 0 (0: moved only by "
                         f"advance), got {speed!r}")
