"""The lock beside a results file: one holder at a time, its pid in the refusal, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from flowrunner import UsageError
from flowrunner._lock import exclusive

HOLD = """\
import sys, time
from flowrunner._lock import exclusive
with exclusive(sys.argv[1], "test", "wait"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_the_lock_file_goes_with_the_first(tmp_path):
    out = tmp_path / "out.jsonl"
    with exclusive(out, "batch", "give another --out") as lock:
        assert lock == tmp_path / "out.jsonl.lock" and lock.is_file()
        with pytest.raises(UsageError) as refused:
            with exclusive(out, "batch", "give another --out"):
                pass
        assert str(refused.value).startswith(f"{out} is in use by another batch (pid {os.getpid()}: ")
        assert str(refused.value).endswith("\n  hint: give another --out")
    assert not lock.exists()
    with exclusive(out, "batch", "give another --out"):  # free again
        pass


def test_a_lock_file_left_by_a_killed_process_does_not_lock(tmp_path):
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UsageError, match=rf"\(pid {holder.pid}: python -c "):
            with exclusive(out, "test", "wait"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=60)
    assert (tmp_path / "out.jsonl.lock").exists()  # kill -9 left the file, but the kernel dropped the lock
    with exclusive(out, "test", "wait"):
        pass


def test_a_lock_file_holding_garbage_is_shown_as_an_unknown_holder(tmp_path):
    import fcntl

    out = tmp_path / "out.jsonl"
    lock = tmp_path / "out.jsonl.lock"
    lock.write_bytes(b"\xff" * 100_000)
    with open(lock, "rb") as handle:  # another program holding it, having written no note of ours
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(UsageError, match=r"in use by another test \(its pid is not known yet\)"):
            with exclusive(out, "test", "wait"):
                pass
