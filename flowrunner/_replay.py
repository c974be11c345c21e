"""Replays are never paced: a request answered from a cassette reaches no server, so it spends no budget.

`use_cassette` marks the block in which every request is answered from the cassette or refused (record
mode `none`, or `once` with the cassette already recorded: vcrpy's `write_protected`). There the engine
takes its turns from `UNPACED` instead of the rate limiter, and sleeps no retry's backoff (`replay_sleep`), so a flow declaring `rate_limit: {rpm: 3}`
replays as fast as one without, and the recorded answers' rate-limit headers (a `remaining: 0`) pause
nothing. While recording, requests reach the server and are paced as always. The mark is process-wide,
as vcrpy's patching of the HTTP client is.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

_lock = threading.Lock()
_replay_only = 0  # blocks open in which no request can be sent


@contextmanager
def replay_only() -> Iterator[None]:
    """Within the block, no request reaches a server: `replaying()` is true."""
    global _replay_only
    with _lock:
        _replay_only += 1
    try:
        yield
    finally:
        with _lock:
            _replay_only -= 1


def replaying() -> bool:
    """True while every request is answered from a cassette (see `replay_only`)."""
    return _replay_only > 0


def replay_sleep(seconds: float) -> None:
    """A retry's wait while replaying: the recorded answers come back at once, so none is slept (the
    record still says how long a live run would have waited)."""


class _Turn:
    """A rate limiter's ticket that waited for nothing and reports nothing."""

    waited = 0.0

    def departed(self) -> None:
        """Nothing left: nothing to report."""

    def finished(self, headers: dict[str, str] | None = None, *, rate_limited: float | None = None) -> None:
        """A recorded answer's headers describe a budget of the past: not taken in."""

    def settle(self, usage: dict[str, Any] | None) -> None:
        """No tokens were spent."""


class _Unpaced:
    """Stands in for a `RateLimiter` while replaying: every request's turn is now."""

    def acquire(self, tokens: int = 0, limit: Any = None, longest_wait: float = 0.0) -> _Turn:
        return _Turn()


UNPACED = _Unpaced()
