"""The commands' one call into the run history: `log_run(record, args, flow)` after a run.

`flowrun run` and each `flowrun chat` turn log by default (`--no-log` or FLOWRUN_NO_LOG=1 turn it off);
`flowrun test` and `flowrun batch` only with `--log`. The history is opened on the first run logged
and kept open for the process (a batch's workers share it). A database that cannot be written costs
one warning line on stderr, once, never the run.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._exceptions import RunError
    from .._model import Flow
    from .._record import RunRecord, StepRecord
    from ..history import History

NO_LOG_VARIABLE = "FLOWRUN_NO_LOG"

_lock = threading.Lock()
_open_histories: dict[Path, History] = {}
_warned: set[Path] = set()


def add_log_option(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """`--no-log` for the commands that log by default, `--log` for the others."""
    if default:
        parser.add_argument("--no-log", dest="log", action="store_false", default=None,
                            help=f"don't keep this run in the run history (`flowrun runs`); "
                                 f"{NO_LOG_VARIABLE}=1 does the same for every run")
    else:
        parser.add_argument("--log", dest="log", action="store_true", default=False,
                            help="keep each run in the run history (`flowrun runs`)")


def logging_on(args: argparse.Namespace) -> bool:
    log = getattr(args, "log", None)
    if log is None:  # the default of run and chat: on, unless the environment says no
        return os.environ.get(NO_LOG_VARIABLE, "").strip().lower() in ("", "0", "false", "no")
    return bool(log)


def log_run(record: RunRecord, args: argparse.Namespace, flow: Flow, *, command: str | None = None) -> str | None:
    """Keep `record` in the history if the command's options say so; its id, or None (warned on stderr)."""
    if not logging_on(args):
        return None
    history = _open()
    run_id = history.write(record, flow_text=_flow_text(flow), command=command or str(args.command))
    if run_id is None:
        _warn(history.path, f"the run was not kept in the history ({history.path}): {history.last_error} "
                            f"({NO_LOG_VARIABLE}=1 turns the history off)")
    return run_id


def log_chat_turn(turn: StepRecord, inputs: dict[str, Any], args: argparse.Namespace, flow: Flow, *,
                  error: RunError | None = None) -> str | None:
    """A chat turn, kept as a one-step run of the chat's flow (failed, with `error`, if the turn failed)."""
    if not logging_on(args):
        return None
    from .._record import RunRecord
    from .._secrets import redact, redact_in_place

    record = RunRecord(flow=flow.name, file=str(flow.path), inputs=dict(inputs), status=turn.status,
                       steps=[turn], usage=dict(turn.usage), started=turn.started, duration=turn.duration)
    if error is None:
        record.outputs = {turn.id: turn.content or ""}
    else:
        record.status = "failed"
        record.error = {"type": type(error).__name__, "message": redact(str(error)), "step": turn.id}
    redact_in_place(record)
    return log_run(record, args, flow, command="chat")


def _open() -> History:
    """The history at the default path (FLOWRUN_HOME's, read now), opened once per process."""
    from ..history import History, default_path

    path = default_path()
    with _lock:
        history = _open_histories.get(path)
        if history is None:
            history = _open_histories[path] = History(path)
            atexit.register(history.close)
        return history


def _flow_text(flow: Flow) -> str | None:
    try:
        return flow.path.read_text(encoding="utf-8", errors="surrogateescape")
    except (OSError, ValueError):
        return None


def _warn(path: Path, message: str) -> None:
    """One warning per history and process: a batch of a thousand runs need not say it a thousand times."""
    with _lock:
        if path in _warned:
            return
        _warned.add(path)
    from .._secrets import redact

    print(redact(f"warning: {message}"), file=sys.stderr)
