"""Runs many `flowrun` command lines in one process, as tests/test_hostile_server.py needs: each through
the CLI's main() as the `flowrun` script would (an exception escaping it is printed as Python prints
it at exit), with stdout and stderr as a pipe's (UTF-8; strict for stdout, backslashreplace for
stderr), and with a fresh rate limiter (each real `flowrun run` is a process of its own).

    python tests/_hostile_runner.py JOBS.json OUT.jsonl FIRST HANG_SECONDS

JOBS.json is a list of {"id", "argv"}; one JSON line per job goes to OUT.jsonl, from job FIRST on:
{"id", "code", "stdout", "stderr", "seconds"}. A job running longer than HANG_SECONDS gets a line
with "hung": true and the process exits with status 3, so the caller can go on after it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, TextIO


def main() -> int:
    jobs_file, out_file, first, hang = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(jobs_file, encoding="utf-8") as f:
        jobs = json.load(f)
    _reuse_tls_context()
    from flowrunner import _ratelimit
    from flowrunner._cli import main as flowrun

    real_out, real_err = sys.stdout, sys.stderr
    with open(out_file, "a", encoding="utf-8") as out:
        for job in jobs[first:]:
            stdout, stderr = io.BytesIO(), io.BytesIO()
            pipes = sys.stdout, sys.stderr = _pipe(stdout, "strict"), _pipe(stderr, "backslashreplace")
            watchdog = threading.Timer(hang, _hung, (out, job["id"], stdout, stderr, real_err))
            watchdog.daemon = True
            started = time.monotonic()
            watchdog.start()
            try:
                code = _flowrun(flowrun, job["argv"])
            finally:
                watchdog.cancel()
                _flush(*pipes)
                sys.stdout, sys.stderr = real_out, real_err
                for pipe in pipes:
                    pipe.detach()  # else closing the wrapper closes the buffer before it is read
            _write(out, {"id": job["id"], "code": code, "stdout": _text(stdout), "stderr": _text(stderr),
                         "seconds": round(time.monotonic() - started, 3)})
            shared = getattr(_ratelimit, "_shared", None)  # the process's limiters, one per server
            if isinstance(shared, dict):
                shared.clear()
    return 0


def _reuse_tls_context() -> None:
    """One default TLS context for every run: making one reads the system's CA file (~30 ms, more than
    a whole run against 127.0.0.1 takes otherwise), and each run's SDK client makes one, though the
    runs talk plain HTTP."""
    import functools
    import ssl

    ssl.create_default_context = functools.lru_cache(maxsize=None)(ssl.create_default_context)  # type: ignore[assignment]


def _flowrun(flowrun: Any, argv: list[str]) -> int:
    """What the `flowrun` script's process would exit with; an escaping exception goes to stderr as
    Python prints it."""
    try:
        code = flowrun(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - what the interpreter would print
        traceback.print_exc()
        return 1
    return code if isinstance(code, int) else 1


def _pipe(buffer: io.BytesIO, errors: str) -> TextIO:
    return io.TextIOWrapper(buffer, encoding="utf-8", errors=errors, write_through=True)


def _flush(*streams: TextIO) -> None:
    for stream in streams:
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the run broke
            pass


def _text(buffer: io.BytesIO) -> str:
    return buffer.getvalue().decode("utf-8", "replace")


def _write(out: Any, line: dict[str, Any]) -> None:
    out.write(json.dumps(line) + "\n")
    out.flush()


def _hung(out: Any, job_id: str, stdout: io.BytesIO, stderr: io.BytesIO, real_err: TextIO) -> None:
    _write(out, {"id": job_id, "code": None, "hung": True, "stdout": _text(stdout), "stderr": _text(stderr)})
    real_err.write(f"{job_id}: still running; stopped\n")
    real_err.flush()
    os._exit(3)


if __name__ == "__main__":
    raise SystemExit(main())
