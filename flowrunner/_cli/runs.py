"""`flowrun runs`: the run history; list the latest runs, show one, diff two, print where it is kept."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, count, positive, shorten

if TYPE_CHECKING:
    from ..history import History, RunDiff, StoredRun

EPILOG = """\
examples:
  flowrun runs                              # the latest 20 runs
  flowrun runs --flow weather --status failed --since 2h -n 50
  flowrun runs show 1a2b3c4d5e6f            # a run as flowrun printed it, and a summary
  flowrun runs show 1a2b3c4d5e6f --json     # its whole record
  flowrun runs diff 1a2b3c4d5e6f 1a2b3c4d7a01
  flowrun runs path                         # where the history is: open it with sqlite3 or
  datasette "$(flowrun runs path)"

Every `flowrun run` and every `flowrun chat` turn is kept (turn it off with --no-log, or
FLOWRUN_NO_LOG=1 in the environment); `flowrun test` and `flowrun batch` keep theirs with --log.
The history is one SQLite file: $FLOWRUN_HOME/history.db, else flowrunner/history.db in the
per-user data folder ($XDG_DATA_HOME or ~/.local/share on Linux, ~/Library/Application Support
on macOS, %LOCALAPPDATA% on Windows). A run id is abbreviated as git abbreviates commits: any
4 or more of its first characters that only one run starts with.
"""

_SINCE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(sub: Any) -> None:
    parser = sub.add_parser("runs", help="the run history: list, show and diff past runs",
                            description="The run history. With no ACTION: the latest runs, newest first "
                                        "(the options below filter them); `show` one run, `diff` two, `path` "
                                        "where the history is.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow", metavar="NAME|FILE", help="only the runs of this flow (its name or file)")
    parser.add_argument("--status", choices=("succeeded", "failed"), help="only the runs that ended so")
    parser.add_argument("--since", type=since, metavar="WHEN",
                        help="only the runs started since WHEN: a time ago (30m, 2h, 3d, 1w) or an ISO date "
                             "or time (2026-11-28, 2026-11-28T09:00), local time unless it says otherwise")
    parser.add_argument("--search", metavar="TEXT", help="only the runs whose record contains TEXT")
    parser.add_argument("-n", dest="limit", type=positive, default=20, metavar="N",
                        help="how many runs to list (default: 20)")
    parser.set_defaults(handler=cmd_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="a run as flowrun printed it, and a summary",
                              description="A run as flowrun printed it (its calls, its outputs or its error), "
                                          "after a summary: steps, rounds, calls, tokens, cost, duration.")
    show.add_argument("id", metavar="ID", help="the run's id, or 4 or more of its first characters")
    show.add_argument("--json", action="store_true", help="print the run's whole record as JSON")
    show.set_defaults(handler=cmd_show)
    diff = actions.add_parser("diff", help="what differs between two runs",
                              description="What differs between runs A and B: inputs, outputs, function calls, "
                                          "tokens, cost, duration, and each step's rounds (- A, + B).")
    diff.add_argument("a", metavar="A", help="a run id (or the start of one)")
    diff.add_argument("b", metavar="B", help="another")
    diff.set_defaults(handler=cmd_diff)
    path = actions.add_parser("path", help="print where the history database is",
                              description="Print the history database's path (it may not exist yet).")
    path.set_defaults(handler=cmd_path)


def since(text: str, now: float | None = None) -> float:
    """argparse type: `2h` (ago) or an ISO date/time, as a unix time."""
    now = time.time() if now is None else now
    match = _SINCE.fullmatch(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time ago like 30m, 2h, 3d or 1w, or an ISO date like "
                                         f"2026-11-28 or 2026-11-28T09:00; got {text!r}") from None
    return moment.timestamp()  # a naive time is local time


def _history() -> History:
    from ..history import History, default_path

    path = default_path()
    return History(path, readonly=not path.exists())  # reading creates nothing


def cmd_path(args: argparse.Namespace) -> int:
    from ..history import default_path

    print(default_path())
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    flow = args.flow
    if flow is not None and os.path.isfile(flow):
        flow = str(Path(flow).absolute())
    with _history() as history:
        runs = history.runs(flow=flow, status=args.status, since=args.since, limit=args.limit, search=args.search)
        if not runs:
            print(f"no runs{' match' if _filtered(args) else ' yet'} (the history: {history.path})", file=sys.stderr)
            return EXIT_OK
    rows = [("ID", "STARTED", "FLOW", "STATUS", "DURATION", "TOKENS", "COST")]
    rows += [(run.short_id, local_time(run.started), shorten(run.flow, 40), run.status, duration(run.duration),
              f"{run.total_tokens:,}", cost(run.cost)) for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {4, 5, 6}  # numbers line up on the right
    for row in rows:
        print("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return EXIT_OK


def _filtered(args: argparse.Namespace) -> bool:
    return any(value is not None for value in (args.flow, args.status, args.since, args.search))


def cmd_show(args: argparse.Namespace) -> int:
    from .._json import dumps

    with _history() as history:
        run = history.get(args.id)
    if args.json:
        print(dumps(run.record, indent=2))
        return EXIT_OK
    print(f"run {run.id}  ({run.command}: {run.file})")
    print(f"flow      {run.flow}" + (f"  (sha256 {run.flow_hash[:12]})" if run.flow_hash else ""))
    print(f"started   {local_time(run.started)}")
    print(f"status    {run.status}" + (f" ({run.error_type})" if run.error_type else ""))
    print(f"models    {', '.join(run.models) or '-'}")
    print(f"summary   {summary(run)}")
    print()
    _print_as_flowrun(run.record)
    return EXIT_OK


def summary(run: StoredRun) -> str:
    """`2 steps, 3 rounds, 1 call, 158 tokens (120 prompt, 38 completion), cost $0.0012, 1.25s`."""
    steps = [s for s in run.record.get("steps") or [] if isinstance(s, dict)]
    rounds = [r for s in steps for r in s.get("rounds") or [] if isinstance(r, dict)]
    calls = sum(len(r.get("calls") or []) for r in rounds)
    return (f"{count(len(steps), 'step')}, {count(len(rounds), 'round')}, {count(calls, 'call')}, "
            f"{run.total_tokens:,} tokens ({run.prompt_tokens:,} prompt, {run.completion_tokens:,} completion), "
            f"cost {cost(run.cost)}, duration {duration(run.duration)}")


def _print_as_flowrun(record: dict[str, Any]) -> None:
    """What `flowrun run` printed: each function call's line, the warnings, the outputs or the error."""
    from .run import print_outputs

    for step in record.get("steps") or []:
        for round_ in (step.get("rounds") or []) if isinstance(step, dict) else []:
            for call in (round_.get("calls") or []) if isinstance(round_, dict) else []:
                if isinstance(call, dict):
                    print(_call_line(str(step.get("id")), call))
    for step in record.get("steps") or []:
        for warning in (step.get("warnings") or []) if isinstance(step, dict) else []:
            print(f"warning in step {step.get('id')!r}: {warning}")
    outputs = record.get("outputs")
    if record.get("status") == "succeeded" and isinstance(outputs, dict):
        print_outputs({str(k): str(v) for k, v in outputs.items()})
    error = record.get("error")
    if isinstance(error, dict):
        step = f" in step {error['step']!r}" if error.get("step") else ""
        print(f"error{step}: {error.get('message')}")


def _call_line(step: str, call: dict[str, Any]) -> str:
    import json

    arguments = call.get("arguments")
    args = json.dumps(arguments, ensure_ascii=False) if arguments is not None else str(call.get("raw_arguments") or "")
    result = call.get("result")
    result_text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    outcome = f"error: {shorten(str(call['error']))}" if call.get("error") else shorten(result_text)
    return f"  [{step}] {shorten(str(call.get('name')), 80)}({shorten(args)}) -> {outcome}"


def cmd_diff(args: argparse.Namespace) -> int:
    from ..history import diff_runs

    with _history() as history:
        a, b = history.get(args.a), history.get(args.b)
    for line in diff_lines(diff_runs(a, b)):
        print(line)
    return EXIT_OK


def diff_lines(diff: RunDiff) -> list[str]:
    """`flowrun runs diff` as text: the two runs, then only what differs."""
    lines = []
    for label, run in (("A", diff.a), ("B", diff.b)):
        lines.append(f"{label}  {run.id}  {local_time(run.started)}  {run.flow}  {run.status}  ({run.command}: "
                     f"{run.file})")
    if diff.same_flow is not None:
        lines.append("flow file: the same text" if diff.same_flow else "flow file: changed between the runs")
    lines.append(f"duration: A {duration(diff.duration.a)}, B {duration(diff.duration.b)}")
    if diff.same:
        lines.append("no differences besides ids and times")
        return lines
    for title, changes in (("inputs", diff.inputs), ("outputs", diff.outputs), ("function calls", diff.calls),
                           ("totals", diff.totals)):
        if changes:
            lines.append(f"{title}:")
            for change in changes:
                lines += _value_lines(change.name, change.a, change.b)
    for step in diff.steps:
        if step.same:
            continue
        status = "" if step.status_a == step.status_b else f" (A {step.status_a or 'not run'}, B {step.status_b or 'not run'})"
        lines.append(f"step {step.id}{status}:")
        for round_ in step.rounds:
            if not round_.same:
                lines.append(f"  {round_.first_difference}")
                lines += [f"    {line}" for line in round_.lines]
    return lines


def _value_lines(name: str, a: Any, b: Any) -> list[str]:
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
        from .._jsondiff import diff_lines as text_diff  # bounded: an output can be megabytes

        body = text_diff(a, b, context=1, width=300, limit=200, max_chars=2_000_000)
        return [f"  {name}:"] + [f"    {line}" for line in body]
    return [f"  {name}:", f"    A {_shown(a)}", f"    B {_shown(b)}"]


def _shown(value: Any) -> str:
    from .._json import dumps

    if value is None:
        return "-"
    return shorten(value if isinstance(value, str) else dumps(value), 300)


def local_time(started: float | None) -> str:
    if started is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    except (OverflowError, OSError, ValueError):
        return "-"


def duration(seconds: float | None) -> str:
    from .._durations import format_duration

    return "-" if seconds is None else format_duration(seconds)


def cost(usd: float | None) -> str:
    """As `flowrun run` says it (millionths below a dollar: a run costs fractions of a cent); unknown is `-`."""
    from ._common import dollars

    return "-" if usd is None else dollars(usd)
