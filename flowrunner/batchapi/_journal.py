"""The job's journal, `OUT.jsonl.batchapi`: every step of a Batch API job, appended and fsynced.

One JSON object a line, appended in the order things happen:
  {"t": "job", "job": ID}                                  the job's id (in every batch's metadata tag)
  {"t": "part", "w": 1, "p": 1, "file": ID, "cids": [...], "hashes": [...]}  a file uploaded, its requests
  {"t": "intent", "w": 1, "p": 1, "tag": TAG}              about to create its batch
  {"t": "batch", "w": 1, "p": 1, "batch": ID}              the batch made
  {"t": "status", "w": 1, "p": 1, "status": S, ...}        the batch's status changed (for --status)
  {"t": "answer", "cid": CID, "h": HASH, "s": 200, "b": {...}, "e": null}   one request's answer
  {"t": "done", "w": 1, "p": 1, "status": S, "files": [...]}   its answers all saved
  {"t": "deleted", "file": ID}                             a file deleted from the server
An `intent` with no `batch` after it is a create whose answer was lost (a kill, a dropped
connection): the batch may exist, and `BatchClient.find` says whether, by its tag. A torn last
line (a kill inside a write) is ignored, as if that step had not happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError
from .._json import JSONError, dumps, loads


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".batchapi")


@dataclass
class Part:
    """One batch file of one wave and its batch."""

    wave: int
    part: int
    file: str | None = None
    cids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    """Of each request as sent (its line's SHA-256, 16 hex digits): an answer is given only to the same request."""
    tag: str | None = None
    batch: str | None = None
    status: str | None = None
    counts: tuple[int, int, int] = (0, 0, 0)
    """request_counts: total, completed, failed (as last seen)."""
    done: bool = False
    files: list[str] = field(default_factory=list)
    """Output and error files, once known."""


@dataclass(frozen=True)
class Answer:
    """One request's answer as the Batch API gave it: an HTTP status and body, or an error object."""

    hash: str
    status: int | None
    body: Any
    error: Any


@dataclass
class JournalState:
    job: str | None = None
    parts: dict[tuple[int, int], Part] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    torn: bool = False

    @property
    def waves(self) -> int:
        return max((w for w, _ in self.parts), default=0)

    def part(self, wave: int, number: int) -> Part:
        return self.parts.setdefault((wave, number), Part(wave, number))


def read_journal(path: str | Path) -> JournalState:
    """The state a journal describes (an empty one if there is no journal)."""
    path = Path(path)
    state = JournalState()
    if not path.exists():
        return state
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    state.torn = True
                    break
                if raw.strip():
                    _apply(state, raw, path, number)
    except OSError as exc:
        raise ConfigError(f"cannot read the Batch API journal {path}: {exc.strerror or exc}") from None
    return state


def _apply(state: JournalState, raw: bytes, path: Path, number: int) -> None:
    try:
        entry = loads(raw)
        kind = entry["t"]
        if kind == "job":
            state.job = str(entry["job"])
        elif kind == "answer":
            state.answers[str(entry["cid"])] = Answer(str(entry["h"]), entry.get("s"), entry.get("b"), entry.get("e"))
        elif kind == "deleted":
            state.deleted.add(str(entry["file"]))
        else:
            part = state.part(int(entry["w"]), int(entry["p"]))
            if kind == "part":
                part.file, part.cids = str(entry["file"]), [str(c) for c in entry["cids"]]
                part.hashes = [str(h) for h in entry["hashes"]]
            elif kind == "intent":
                part.tag = str(entry["tag"])
            elif kind == "batch":
                part.batch = str(entry["batch"])
            elif kind == "status":
                part.status = str(entry["status"])
                part.counts = tuple(int(n) for n in entry.get("counts", (0, 0, 0)))[:3]  # type: ignore[assignment]
            elif kind == "done":
                part.done, part.status = True, str(entry["status"])
                part.files = [str(f) for f in entry.get("files", [])]
            else:
                raise KeyError(kind)
    except (JSONError, KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}:{number} is not a line of a flowrunner Batch API journal\n  hint: is it "
                          "the journal of this --out? Move it away to start the job afresh") from None


class Journal:
    """Appends entries; `sync()` makes everything appended so far durable."""

    def __init__(self, path: str | Path, state: JournalState):
        self.path = Path(path)
        self.state = state
        if state.torn:  # cut the torn line off, so the next entry starts on a line of its own
            with open(self.path, "rb+") as handle:
                data = handle.read()
                handle.truncate(data.rfind(b"\n") + 1)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write the Batch API journal {path}: {exc.strerror or exc}") from None

    def add(self, entry: dict[str, Any], *, sync: bool = True) -> None:
        assert self._fd is not None
        data = memoryview((dumps(entry) + "\n").encode("utf-8"))
        while data:
            data = data[os.write(self._fd, data):]
        if sync:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
