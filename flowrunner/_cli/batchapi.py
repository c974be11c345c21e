"""`flowrun batch ... --via batch-api` and `flowrun batch --status OUT.jsonl`: options, progress, summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._durations import format_duration
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, clip, connection, count, positive

if TYPE_CHECKING:
    from ..batchapi import JobProgress, JobSettings, JobSummary

EPILOG = """\
the Batch API (--via batch-api):
  flowrun batch FLOW --inputs IN.jsonl --out OUT.jsonl --via batch-api
  flowrun batch --status OUT.jsonl    # where a job stands (from its journal, OUT.jsonl.batchapi)
Every input's requests go to the server's Batch API (/v1/files, /v1/batches) in waves, at half the
price and outside the rate limits; a run that calls functions or repairs its answer sends its next
request in the next wave. Results are the same lines as a live batch. The journal beside --out
saves every step: after Ctrl-C, a kill or a crash, --resume picks up the batches in flight and
never sends a request twice. Files are split at 50,000 requests or 200 MB; the uploaded and
downloaded files are deleted when the job is done, unless --keep-files.
  FLOWRUN_BATCH_POLL=FIRST[,MAX]      seconds between polls (default 1, backing off to 60)
  FLOWRUN_BATCH_FILE_LIMITS=N[,BYTES] a smaller file limit (requests, bytes) than the API's
"""


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the Batch API")
    group.add_argument("--via", choices=("live", "batch-api"), default="live",
                       help="live: send each request as the run needs it (default); batch-api: through the "
                            "server's Batch API in waves, at half the price, done within 24 h")
    group.add_argument("--keep-files", action="store_true",
                       help="with --via batch-api: keep the files uploaded to and made by the server")
    group.add_argument("--window", type=positive, default=None, metavar="N",
                       help="with --via batch-api: runs held at once, waiting for their answers (default 10000)")
    group.add_argument("--status", type=Path, metavar="OUT.jsonl",
                       help="show where a --via batch-api job writing OUT.jsonl stands, and exit")


def missing_arguments(args: argparse.Namespace) -> list[str]:
    """What `flowrun batch` needs unless it is asked for --status (argparse cannot say 'unless')."""
    return [name for name, value in (("FLOW", args.flow), ("--inputs", args.inputs_file), ("--out", args.out))
            if value is None]


def settings(args: argparse.Namespace) -> JobSettings:
    from .._exceptions import UsageError
    from ..batchapi import JobSettings

    base = JobSettings()
    poll = _numbers("FLOWRUN_BATCH_POLL", float) or [base.poll_first]
    limits = _numbers("FLOWRUN_BATCH_FILE_LIMITS", int) or [base.max_requests]
    if len(poll) > 2 or len(limits) > 2:
        raise UsageError("FLOWRUN_BATCH_POLL and FLOWRUN_BATCH_FILE_LIMITS take one or two numbers, comma-separated")
    return JobSettings(window=args.window or base.window, keep_files=args.keep_files,
                       poll_first=poll[0], poll_max=poll[-1] if len(poll) == 2 else max(poll[0], base.poll_max),
                       max_requests=min(int(limits[0]), base.max_requests),
                       max_bytes=min(int(limits[1]), base.max_bytes) if len(limits) == 2 else base.max_bytes)


def _numbers(name: str, kind: type) -> list[Any]:
    from .._exceptions import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return []
    try:
        values = [kind(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(v > 0 for v in values):
        raise UsageError(f"{name}={text!r}: expected positive numbers, comma-separated")
    return values


def cmd_batch_api(args: argparse.Namespace) -> int:
    from .._loader import load_flow
    from ..batchapi import BatchAPIJob, BatchClient
    from .batch import after_run, print_summary

    flow = load_flow(args.flow)
    job_settings = settings(args)
    if (args.resume or args.retry_failed) and args.cassette is not None and args.record_mode in (None, "once"):
        args.record_mode = "new_episodes"  # as a live batch: resuming adds to the cassette
    display = JobDisplay(sys.stderr, args.progress_interval)
    try:
        with connection(flow, args):
            client = BatchClient(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY") or None,
                                 timeout=args.timeout)
            job = BatchAPIJob(flow, args.inputs_file, args.out, client, model=args.model, rate_limit=args.rate_limit,
                              settings=job_settings, resume=args.resume, retry_failed=args.retry_failed,
                              full_record=args.full_record, on_progress=display.update, on_interrupt=ask_to_cancel,
                              on_record=lambda record: after_run(record, flow, args), prices=dict(getattr(args, "prices", None) or []))
            summary = job.run_job()
    finally:
        display.finish()
    print_summary(summary.batch, args)
    print(f"  Batch API: job {summary.job}, {count(summary.waves, 'wave')}, {batches(summary.batches)} "
          f"created this time, {summary.bytes_uploaded:,} bytes uploaded"
          + (f", {summary.answered_from_journal:,} answers from the journal" if summary.answered_from_journal else ""))
    if summary.batch.halted is not None:
        return EXIT_FAILED
    if summary.batch.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.batch.progress.failed else EXIT_OK


def batches(n: int) -> str:
    return f"{n} batch{'' if n == 1 else 'es'}"


def ask_to_cancel(batch_ids: list[str]) -> bool:
    """Ctrl-C with batches in flight: cancel them, or leave them running for --resume? (No terminal: leave them.)"""
    print(file=sys.stderr)
    if not sys.stdin.isatty():
        print(f"leaving {batches(len(batch_ids))} running: {', '.join(batch_ids)}", file=sys.stderr)
        return False
    try:
        answer = input(f"cancel the {batches(len(batch_ids))} in flight? Their finished requests are kept "
                       "(y: cancel, N: leave them running for --resume) [y/N] ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    return answer.strip().lower() in ("y", "yes")


class JobDisplay:
    """The job's progress on stderr: one redrawn line on a terminal, a plain line now and then otherwise."""

    def __init__(self, stream: TextIO, interval: float | None):
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self._last: float | None = None
        self._drawn = False

    def update(self, progress: JobProgress) -> None:
        if self._last is not None and progress.runs.elapsed - self._last < self.interval:
            return
        self._last = progress.runs.elapsed
        text = line(progress)
        if self.tty:
            import shutil

            width = max(shutil.get_terminal_size().columns - 1, 20)
            self.stream.write("\r" + clip(text, width) + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write("batch: " + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def line(p: JobProgress) -> str:
    """`wave 2: 1 batch in_progress, 300/1,000 requests, ETA 5m; runs 700/1,000 done (3 failed), 12,345 tokens`."""
    r = p.runs
    if p.batches_in_flight:
        eta = f", ETA {format_duration(max(1, round(p.eta)))}" if p.eta is not None else ""
        head = (f"wave {p.wave}: {batches(p.batches_in_flight)} {p.status}, "
                f"{p.requests_done:,}/{p.requests_in_flight:,} requests{eta}")
    else:
        head = f"wave {p.wave}: preparing the next wave"
    skipped = f", {r.skipped} skipped" if r.skipped else ""
    return f"{head}; runs {r.done:,}/{r.total - r.skipped:,} done ({r.failed} failed){skipped}, {r.tokens:,} tokens"


def cmd_status(path: Path) -> int:
    """Where a job stands, from its journal and its results file (asks no server)."""
    from .._batchio import read_results
    from .._exceptions import ConfigError
    from ..batchapi import journal_path, read_journal

    journal = journal_path(path)
    if not journal.exists():
        raise ConfigError(f"no Batch API job writes {path}: there is no journal {journal}\n  hint: give the "
                          "--out of a `flowrun batch ... --via batch-api`")
    state = read_journal(journal)
    results = read_results(path, repair=False)
    succeeded = sum(1 for s in results.status.values() if s == "succeeded")
    print(f"job {state.job}: {count(len(results.status), 'input')} done ({succeeded} succeeded, "
          f"{len(results.status) - succeeded} failed), {count(len(state.answers), 'answer')} journaled")
    in_flight = 0
    for part in sorted(state.parts.values(), key=lambda p: (p.wave, p.part)):
        total, completed, failed = part.counts
        where = part.batch or ("create asked, no answer saved" if part.tag else "uploaded, no batch")
        state_text = "done" if part.done else "in flight" if part.batch else "not sent"
        in_flight += part.batch is not None and not part.done
        print(f"  wave {part.wave} file {part.part}: {count(len(part.cids), 'request')}, batch {where}, "
              f"{part.status or '-'} ({completed + failed}/{total or len(part.cids)}), {state_text}")
    if in_flight:
        print(f"{batches(in_flight)} in flight: `flowrun batch ... --via batch-api --resume` goes on with "
              "them")
    return EXIT_OK
