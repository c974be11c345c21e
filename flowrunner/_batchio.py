"""A batch's files: input lines read lazily with a stable key each, and the append-only results file.

Keys. An input line that is a JSON object with an `id` (a string or an integer) is keyed by that
id; any other line by the first 16 hex digits of the SHA-256 of its canonical JSON (sorted keys,
compact), or of its text when it is not JSON. The n-th repeat of a key (n >= 2) is keyed `KEY#n`,
so identical lines are separate runs and keys stay stable as long as the file's lines keep their
order. Blank lines are not inputs.

Results. One JSON line per finished run, written with one `os.write` on an unbuffered append-only
descriptor: a `kill -9` cannot lose a line that was written, and can only leave a torn last line
if it lands inside that one write. `os.fsync` runs every `sync_every` lines or `sync_seconds`, and
at close, against a machine crash. Reading results back for `--resume`, the latest line per key
wins, and a torn last line is cut off (its run is redone).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._cassette import canonical_json
from ._exceptions import ConfigError
from ._json import JSONError, dumps, loads


@dataclass(frozen=True)
class InputLine:
    """One input: where it is, its key, and its value (or why it cannot be run)."""

    line: int
    key: str
    value: Any
    """The parsed JSON object; the line's text when `problem` says it is not one."""
    problem: str | None = None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]  # a lone surrogate is text too


def _parse(number: int, text: str) -> tuple[str, Any, str | None]:
    """(key before repeats, value, problem) for one non-blank line."""
    try:
        value = loads(text)
    except JSONError as exc:
        return _digest(text), text, f"line {number} is not JSON ({exc})"
    if not isinstance(value, dict):
        return _digest(canonical_json(value)), value, \
            f"line {number} is a JSON {type(value).__name__}, not an object of input values"
    explicit = value.get("id")
    if isinstance(explicit, (str, int)) and not isinstance(explicit, bool):
        return str(explicit), value, None
    return _digest(canonical_json(value)), value, None


def read_inputs(path: str | Path) -> Iterator[InputLine]:
    """The inputs, one at a time (a 100,000-line file is never held in memory, only its keys)."""
    # Repeats are found by a set of 64-bit hashes of the keys (about 60 bytes a line, not the keys
    # themselves); only keys that do repeat are kept whole, with their count.
    seen: set[int] = set()
    repeats: dict[str, int] = {}
    for number, text in _lines(path):
        key, value, problem = _parse(number, text)
        fingerprint = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                     "big")
        if fingerprint in seen:
            repeat = repeats[key] = repeats.get(key, 1) + 1
        else:
            seen.add(fingerprint)
            repeat = 1
        yield InputLine(number, key if repeat == 1 else f"{key}#{repeat}", value, problem)


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; the one reading of the inputs that decides what is blank."""
    if Path(path).exists() and not Path(path).is_file():
        raise ConfigError(f"the inputs {path} are not a regular file\n  hint: a batch reads its inputs twice "
                          "(to count them, then to run them), which a pipe does not allow: save it to a file first")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot read the inputs {path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace").strip()  # editors' BOM
            if text:
                yield number, text


def count_inputs(path: str | Path) -> int:
    """How many inputs there are, blank lines left out as `read_inputs` leaves them (for the ETA)."""
    return sum(1 for _ in _lines(path))


@dataclass(frozen=True)
class PreviousResults:
    """What a results file already holds: the latest status per key, and whether a torn line was cut."""

    status: dict[str, str]
    lines: int
    cut_torn_line: bool


def read_results(path: str | Path, *, repair: bool) -> PreviousResults:
    """Scan a results file for `--resume`; with `repair`, cut a torn last line off the file."""
    path = Path(path)
    status: dict[str, str] = {}
    lines = 0
    good_end = 0
    torn = False
    if not path.exists():
        return PreviousResults(status, 0, False)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    torn = True  # only a kill inside the last write leaves this
                    break
                good_end += len(raw)
                if not raw.strip():
                    continue
                try:
                    record = loads(raw)
                    key, state = record["key"], record["status"]
                except (JSONError, KeyError, TypeError):
                    raise ConfigError(f"{path}:{number} is not a flowrunner result line\n  hint: is --out "
                                      "the results file of this batch? Give a new file to start "
                                      "afresh") from None
                status[str(key)] = str(state)
                lines += 1
    except OSError as exc:
        raise ConfigError(f"cannot read the results {path}: {exc.strerror or exc}") from None
    if torn and repair:
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
            os.fsync(handle.fileno())
    return PreviousResults(status, lines, torn)


class ResultWriter:
    """Appends result lines, one `os.write` each, from any thread; fsyncs in batches and at close."""

    def __init__(self, path: str | Path, *, sync_every: int = 100, sync_seconds: float = 1.0):
        self.path = Path(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write the results {path}: {exc.strerror or exc}") from None
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds
        self._lock = threading.Lock()
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self.written = 0

    def write(self, result: dict[str, Any]) -> bool:
        """Append one result; False (nothing written) once the writer is closed."""
        data = (dumps(result) + "\n").encode("utf-8")  # never fails: see _json.dumps
        with self._lock:
            if self._fd is None:
                return False
            view = memoryview(data)
            while view:  # a regular file takes it whole; the loop is for the exotic rest
                view = view[os.write(self._fd, view):]
            self.written += 1
            self._unsynced += 1
            if self._unsynced >= self.sync_every or time.monotonic() - self._synced_at >= self.sync_seconds:
                self._sync()
        return True

    def sync_if_due(self) -> None:
        """Called on the batch's clock, so a slow trickle of results is still synced every few seconds."""
        with self._lock:
            if self._fd is not None and self._unsynced and \
                    time.monotonic() - self._synced_at >= self.sync_seconds:
                self._sync()

    def _sync(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def close(self) -> None:
        """Sync and close; later writes (runs abandoned on Ctrl-C) are dropped, never half-written."""
        with self._lock:
            if self._fd is None:
                return
            self._sync()
            os.close(self._fd)
            self._fd = None
