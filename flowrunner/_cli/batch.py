"""`flowrun batch FLOW --inputs IN.jsonl --out OUT.jsonl`: one run per input line; progress; resume."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._durations import format_duration
from . import batchapi
from ._common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_run_options, clip, connection, count, positive,
                      redact, seconds, usage_line)
from ._history import add_log_option, log_run
from ._trace import maybe_trace

if TYPE_CHECKING:
    from .._batch import BatchProgress, BatchSummary

EPILOG = """\
examples:
  flowrun batch flows/weather.yaml --inputs flows/data/weather.jsonl --out results.jsonl \\
      --cassette flows/cassettes/weather.batch.yaml
  flowrun batch flows/weather.yaml --inputs big.jsonl --out results.jsonl --base-url URL --concurrency 16
  flowrun batch ... --resume          # after Ctrl-C, a kill or a crash: run only what is missing
  flowrun batch ... --retry-failed    # also rerun the inputs whose latest result failed

Each input line is a JSON object of the flow's inputs; an "id" field (string or integer) is the
line's key (and is not passed to the flow unless it declares an input "id"); without one the key
is a hash of the line. Each result line is
  {"key", "line", "input", "status", "outputs", "usage", "cost", "error"}
(cost: US dollars, null when unknown or the input was not run; plus "warnings": [{"step",
"message"}] when a run passed on something to look at, such as an answer cut at the token
limit), appended as soon as its run ends (in the order runs end); the latest line per key wins.

One batch at a time may write to an --out: a second one (resumed or not) is refused at once
with exit status 2, naming the first one's pid (the lock is OUT.jsonl.lock, dropped however the
first one ends, kill -9 included).

{batchapi}
exit status: 0 every run succeeded, 1 some failed, 2 invalid flow or usage (or --out in use),
130 interrupted.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("batch", help="run a flow once per line of a JSONL file, resumably",
                            description="Run a flow once per input line, appending one result line per "
                                        "run; --resume finishes an interrupted batch.",
                            epilog=EPILOG.replace("{batchapi}", batchapi.EPILOG),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    # FLOW, --inputs and --out are required unless --status (see cmd_batch): argparse cannot say "unless".
    parser.add_argument("flow", metavar="FLOW", nargs="?", help="the flow's YAML file")
    parser.add_argument("--inputs", dest="inputs_file", type=Path, metavar="IN.jsonl",
                        help="one JSON object of input values per line")
    parser.add_argument("--out", type=Path, metavar="OUT.jsonl",
                        help="results file, appended to (must be new or empty unless --resume)")
    parser.add_argument("-c", "--concurrency", type=positive, default=8, metavar="N",
                        help="runs at the same time (default: 8)")
    parser.add_argument("--resume", action="store_true", help="skip inputs whose result is already in --out")
    parser.add_argument("--retry-failed", action="store_true",
                        help="like --resume, and rerun the inputs whose latest result failed")
    parser.add_argument("--full-record", action="store_true",
                        help="add each run's whole record (every round) to its result line under 'record'")
    parser.add_argument("--progress-interval", type=seconds, default=None, metavar="SECONDS",
                        help="seconds between progress lines when stderr is not a terminal (default: 10)")
    add_run_options(parser, inputs=False)
    add_log_option(parser, default=False)
    batchapi.add_options(parser)
    parser.set_defaults(handler=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from .._batch import BatchRunner
    from .._engine import Engine
    from .._exceptions import UsageError
    from .._loader import load_flow

    if args.status is not None:
        return batchapi.cmd_status(args.status)
    if batchapi.missing_arguments(args):
        raise UsageError(f"flowrun batch: the following arguments are required: "
                         f"{', '.join(batchapi.missing_arguments(args))}")
    if args.inputs:  # -i NAME=VALUE, from the shared run options
        raise UsageError("flowrun batch takes its inputs from --inputs, one JSON object per line; "
                         "-i is for `flowrun run`")
    if args.via == "batch-api":
        return batchapi.cmd_batch_api(args)
    flow = load_flow(args.flow)
    if (args.resume or args.retry_failed) and args.cassette is not None and args.record_mode in (None, "once"):
        # The cassette exists from the interrupted batch; `once` would replay only, and every input
        # not yet run would miss. Resuming adds to it.
        args.record_mode = "new_episodes"
    display = Progress(sys.stderr, args.progress_interval)
    try:
        with connection(flow, args) as transport:
            engine = Engine(transport, model=args.model, rate_limit=args.rate_limit, prices=dict(args.prices))
            runner = BatchRunner(engine, flow, args.inputs_file, args.out,
                                 concurrency=args.concurrency, resume=args.resume, retry_failed=args.retry_failed,
                                 full_record=args.full_record, on_progress=display.update,
                                 on_record=lambda record: after_run(record, flow, args))
            summary = runner.run()
    finally:
        display.finish()  # an error then starts on a line of its own, not on the progress bar's
    if summary.cut_torn_line:
        print(f"{args.out}: its last line was torn (a kill during a write) and was cut; that input was rerun",
              file=sys.stderr)
    print_summary(summary, args)
    if summary.halted is not None:
        return EXIT_FAILED
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.progress.failed else EXIT_OK


def after_run(record: Any, flow: Any, args: argparse.Namespace) -> None:
    """Each run, as it ends (in its worker): into the history, and its trace sent."""
    log_run(record, args, flow)
    maybe_trace(record, flow, args)


class Progress:
    """Draws progress on stderr: one redrawn line on a terminal, a plain line now and then otherwise."""

    def __init__(self, stream: TextIO, interval: float | None):
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 10.0)
        self._last: float | None = None
        self._drawn = False
        self._pending: BatchProgress | None = None
        """The latest progress not drawn (too soon after the last): `finish` draws it, so the line ends true."""

    def update(self, progress: BatchProgress) -> None:
        if self._last is not None and progress.elapsed - self._last < self.interval:
            self._pending = progress
            return
        self._last = progress.elapsed
        self._pending = None
        if self.tty:
            # One column short of the width: a line that fills it wraps, and each redraw would scroll.
            width = max(shutil.get_terminal_size().columns - 1, 20)
            text = line(progress)
            room = width - len(text) - 3  # the bar shrinks, then goes, before the numbers are clipped
            text = bar(progress, min(room, 24)) if room >= 8 else text
            self.stream.write("\r" + clip(text, width) + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write("batch: " + line(progress) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._pending is not None and self.tty:
            self._last = None
            self.update(self._pending)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def line(p: BatchProgress) -> str:
    """`120/300 done (2 failed), 40 skipped, 3 running, 15.2/s, ETA 12s, 34,567 tokens`."""
    parts = [f"{p.done}/{p.total - p.skipped} done ({p.failed} failed)"]
    if p.skipped:
        parts.append(f"{p.skipped} skipped")
    if p.stopping:  # no ETA: the inputs not started will not run; short, to fit 80 columns
        return f"stopping: {p.in_flight} still running (Ctrl-C again to abandon them); " + ", ".join(parts)
    parts.append(f"{p.in_flight} running")
    parts.append(f"{p.rate:.1f}/s")
    parts.append(f"ETA {format_duration(max(1, round(p.eta)))}" if p.eta is not None else "ETA ?")
    parts.append(f"{p.tokens:,} tokens")
    return ", ".join(parts)


def bar(p: BatchProgress, width: int = 24) -> str:
    if p.stopping:
        return line(p)
    todo = max(p.total - p.skipped, 1)
    filled = min(width, int(width * p.done / todo))
    return f"[{'#' * filled}{'.' * (width - filled)}] " + line(p)


def print_summary(summary: BatchSummary, args: argparse.Namespace) -> None:
    p = summary.progress
    usage = summary.usage
    head = "batch stopped" if summary.halted else "batch interrupted" if summary.interrupted else "batch finished"
    skipped = f", {p.skipped} skipped (already in {args.out})" if p.skipped else ""
    print(f"{head}: {p.succeeded} succeeded, {p.failed} failed{skipped}")
    print(f"  {count(p.requests, 'request')}, {usage_line(usage, summary.cost)}, "
          f"{p.elapsed:.1f} s, {p.rate:.1f} runs/s")
    print(f"  results: {args.out}")
    if summary.cost_problems:
        from .._pricing import cost_note

        print(cost_note(summary.cost_problems), file=sys.stderr)
    if summary.halted is not None:
        print(f"error: {redact(str(summary.halted))}\nthe batch stopped: the other inputs would fail alike. "
              f"Once that is fixed, finish it with:\n  {resume_command(args)}", file=sys.stderr)
    elif summary.interrupted:
        abandoned = f"; {count(summary.abandoned, 'run')} in flight abandoned" if summary.abandoned else ""
        print(f"interrupted{abandoned}; finish the batch with:\n  {resume_command(args)}", file=sys.stderr)
    elif p.failed:
        print(f"rerun the failures with:\n  {resume_command(args, retry_failed=True)}", file=sys.stderr)


def resume_command(args: argparse.Namespace, *, retry_failed: bool = False) -> str:
    """The command line that finishes this batch: the same options, plus --resume (or --retry-failed)."""
    words = ["flowrun", "batch", str(args.flow), "--inputs", str(args.inputs_file), "--out", str(args.out)]
    words.append("--retry-failed" if retry_failed or args.retry_failed else "--resume")
    if args.concurrency != 8:
        words += ["--concurrency", str(args.concurrency)]
    for flag, value in (("--model", args.model), ("--base-url", _shown_base_url(args.base_url)),
                        ("--cassette", args.cassette), ("--record-mode", args.record_mode),
                        ("--rate-limit", args.rate_limit and str(args.rate_limit).replace(" ", ""))):
        if value is not None:
            words += [flag, str(value)]
    for model, price in getattr(args, "prices", None) or []:  # a Namespace made by hand may have none
        cached = f",cached_input:{price.cached_input!r}" if price.cached_input is not None else ""
        words += ["--price", f"{model}=input:{price.input!r},output:{price.output!r}{cached}"]
    if args.timeout != 600.0:
        words += ["--timeout", f"{args.timeout:g}"]
    if args.deadline is not None:
        words += ["--deadline", f"{args.deadline:g}"]
    if args.full_record:
        words.append("--full-record")
    if getattr(args, "log", False):
        words.append("--log")
    if getattr(args, "via", "live") != "live":
        words += ["--via", args.via] + (["--keep-files"] if args.keep_files else [])
        words += ["--window", str(args.window)] if args.window else []
    return shlex.join(words)


def _shown_base_url(url: str | None) -> str | None:
    """The base URL for a printed command: one holding credentials is left out if $OPENAI_BASE_URL gives it
    again, else shown with them as `****` (to be put back by whoever runs it), never in clear."""
    import os

    from .._secrets import redact_url

    if not url or redact_url(url) == url:
        return url
    return None if url == os.environ.get("OPENAI_BASE_URL") else redact_url(url)
