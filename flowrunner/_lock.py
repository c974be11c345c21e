"""One writer at a time for a file: a lock file beside it (`OUT.jsonl.lock`), held with `flock`.

The kernel drops an `flock` when the descriptor holding it closes, however the process ends
(`kill -9` and crashes included), so a lock can never outlive its holder and there is no stale
lock to clean up by hand. The holder writes its pid and command line into the lock file, for the
message a second process gets. The lock file is removed on release; a process that opened it just
before then finds, once it holds the lock, that the file is no longer the one at that path, and
starts over on the new one.

POSIX only: where `fcntl` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator

from ._exceptions import ConfigError, UsageError

if sys.platform != "win32":
    import fcntl

_MAX_HOLDER_BYTES = 4096  # what is read of another holder's note: it is only shown, and clipped


@contextlib.contextmanager
def exclusive(target: str | Path, what: str, hint: str) -> Iterator[Path]:
    """Hold `TARGET.lock` for the block; UsageError at once if another process holds it.

    `what` names the holder in the message ("another batch"); `hint` says what the user can do."""
    path = Path(target)
    path = path.with_name(path.name + ".lock")
    if sys.platform == "win32":  # pragma: no cover
        yield path
        return
    fd = _acquire(path, Path(target), what, hint)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: whoever waits on this file sees it is gone
        os.close(fd)


def _acquire(path: Path, target: Path, what: str, hint: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {path}: {exc.strerror or exc}\n  hint: the folder "
                              f"of {target} must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(f"{target} is in use by another {what} ({holder})\n  hint: {hint}") from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from None
        try:
            here, there = os.fstat(fd), os.stat(path)
            current = (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            _write_holder(fd)
            return fd
        os.close(fd)  # the previous holder removed the file after we opened it: lock the new one


def _write_holder(fd: int) -> None:
    note = json.dumps({"pid": os.getpid(), "command": _command()}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode("utf-8", errors="replace"), 0)


def _command() -> str:
    """This process's command line as a user would type it: `flowrun batch ...`, `python -m pkg ...`."""
    argv = list(sys.argv) or [""]
    program = Path(argv[0]).name
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if program == "__main__.py" and spec is not None:
        program = f"python -m {spec.name.removesuffix('.__main__')}"
    elif program.endswith(".py") or program in ("-c", ""):
        program = f"python {argv[0]}".strip()
    return " ".join([program, shlex.join(argv[1:])]).strip()


def _holder(fd: int) -> str:
    """`pid 123: flowrun batch ...` from the lock file, as far as it can be read (it is only shown)."""
    try:
        note = json.loads(os.pread(fd, _MAX_HOLDER_BYTES, 0))
        pid, command = note["pid"], note["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not known yet"
    if not isinstance(pid, int) or not isinstance(command, str):
        return "its pid is not known"
    command = " ".join(command.split())
    return f"pid {pid}: {command if len(command) <= 200 else command[:197] + '...'}"
