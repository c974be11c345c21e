"""Batch runs: one run of a flow per input line, results appended as runs end, resumable.

Threads, not asyncio: every worker calls the one shared `Engine.run`, so whatever the engine and
its transport do about rate limits and retries holds for the whole process. A feeder thread reads
the inputs lazily into a small queue, `concurrency` daemon workers run them, and the caller's
thread waits, reports progress through `on_progress` and handles Ctrl-C: the first stops taking
inputs and lets the runs in flight finish, a second abandons them (their results are dropped,
never half-written). Results are written in the order runs end, not the order of the inputs.

A failure of the account rather than of an input (a bad key, a used-up quota or daily limit) stops
the batch the same way, without writing that input down as failed: `--resume` runs it once the
account is fixed, instead of every remaining input failing alike.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ._batchio import InputLine, ResultWriter, count_inputs, read_inputs, read_results
from ._engine import Engine, Event, EventHandler
from ._exceptions import ConfigError, InputError, UsageError
from ._lock import exclusive
from ._model import Flow
from ._pricing import CostTally
from ._record import RunRecord, add_usage
from ._retry import halts_everything
from ._secrets import redact

_DONE = object()  # tells a worker there is nothing more


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands; `on_progress` gets one every tick and at the end."""

    total: int
    """Input lines in the file."""
    skipped: int
    """Inputs whose result was already in the results file (so far; the feeder counts as it reads)."""
    succeeded: int
    failed: int
    in_flight: int
    requests: int
    tokens: int
    elapsed: float
    stopping: bool = False

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def rate(self) -> float:
        """Runs finished per second in this batch (skipped inputs don't count)."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        remaining = self.total - self.skipped - self.done
        return remaining / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class BatchSummary:
    """How a batch ended: the last progress, the token usage by kind, and whether it was cut short."""

    progress: BatchProgress
    usage: dict[str, int]
    interrupted: bool
    abandoned: int
    """Runs in flight that were given up on a second Ctrl-C; `--resume` redoes them."""
    cut_torn_line: bool
    halted: BaseException | None = None
    """The account-level failure that stopped the batch (see the module docstring), if one did."""
    cost: float | None = None
    """US dollars, the runs' together (None if one's is unknown: `cost_problems` say why)."""
    cost_problems: tuple[str, ...] = ()


ProgressHandler = Callable[[BatchProgress], None]


@dataclass
class _Tally:
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0
    requests: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    costs: CostTally = field(default_factory=CostTally)

    def count(self, result: dict[str, Any], usage: dict[str, Any] | None, ran: RunRecord | None) -> None:
        """A result line written: its status, tokens and cost join the totals."""
        if result["status"] == "succeeded":
            self.succeeded += 1
        else:
            self.failed += 1
        add_usage(self.usage, usage)
        if ran is not None:
            self.costs.add(ran)


class BatchRunner:
    """Runs `flow` once per line of `inputs` into `out`; `run()` returns a BatchSummary."""

    def __init__(self, engine: Engine, flow: Flow, inputs: str | Path, out: str | Path, *,
                 concurrency: int = 8, resume: bool = False, retry_failed: bool = False,
                 full_record: bool = False, on_progress: ProgressHandler | None = None,
                 tick: float = 0.2, sync_every: int = 100, sync_seconds: float = 1.0,
                 on_record: Callable[[RunRecord], object] | None = None):
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        self.engine, self.flow = engine, flow
        self.inputs, self.out = Path(inputs), Path(out)
        self.concurrency = concurrency
        self.resume = resume or retry_failed
        self.retry_failed = retry_failed
        self.full_record = full_record
        self.on_progress = on_progress
        self.on_record = on_record
        """Called with each run's record as it ends, in the worker's thread (the CLI keeps it in the history
        and sends its trace)."""
        self.tick = tick
        self._sync = (sync_every, sync_seconds)
        self._stop = threading.Event()
        self._finished = threading.Event()  # set by the last worker to leave
        self._workers_left = concurrency
        self._lock = threading.Lock()
        self._tally = _Tally()
        self._fatal: BaseException | None = None
        self._halted: BaseException | None = None
        self._started = 0.0
        self._total = 0
        self._skips_expected = 0

    def stop(self) -> None:
        """Take no new inputs; runs in flight finish and are written (what the first Ctrl-C does)."""
        self._stop.set()

    def run(self) -> BatchSummary:
        self.engine.check_models(self.flow)  # once, not in every worker
        total = count_inputs(self.inputs)
        # Two batches appending to one results file would each run (and pay for) every input left.
        with exclusive(self.out, "batch", "wait for that batch to end (or stop it), then --resume; or give "
                       "another --out file"):
            if not self.flow.mcp:
                return self._run(total)
            from .mcp import hold

            with hold(self.flow):  # one process per MCP server for the whole batch, not one per input
                return self._run(total)

    def _run(self, total: int) -> BatchSummary:
        previous = read_results(self.out, repair=self.resume)
        if (previous.lines or previous.cut_torn_line) and not self.resume:
            held = f"{previous.lines} results" if previous.lines else "a partial result line"
            raise ConfigError(f"{self.out} already holds {held}\n  hint: add --resume to "
                              "finish that batch (--retry-failed also reruns its failures), or give a new "
                              "--out file")
        wanted_again = {"failed"} if self.retry_failed else set()
        done = {key for key, status in previous.status.items() if status not in wanted_again}
        cut_torn_line = previous.cut_torn_line
        del previous  # keep only the set of keys to skip
        writer = ResultWriter(self.out, sync_every=self._sync[0], sync_seconds=self._sync[1])
        work: queue.Queue[Any] = queue.Queue(maxsize=self.concurrency * 2)
        self._total, self._started = total, time.monotonic()
        self._skips_expected = min(len(done), total)  # for the ETA, until the feeder has counted them
        self._workers_left = min(self.concurrency, max(total, 1))  # no idle threads for a short batch
        feeder = threading.Thread(target=self._feed, args=(work, done, self._workers_left), name="batch-feeder",
                                  daemon=True)
        workers = [threading.Thread(target=self._work, args=(work, writer), name=f"batch-{n}", daemon=True)
                   for n in range(self._workers_left)]
        # Requests are counted as they leave: each retry is one more, one the rate limiter refused is none.
        chained = self.engine.on_event
        self.engine.on_event = lambda event: self._count(event, chained)
        try:
            for thread in (feeder, *workers):
                thread.start()
            interrupted, abandoned = self._wait(writer)
        finally:
            writer.close()
            self.engine.on_event = chained
        if self._fatal is not None:
            raise self._fatal
        return BatchSummary(self._progress(), dict(self._tally.usage), interrupted and self._halted is None,
                            abandoned, cut_torn_line, self._halted, self._tally.costs.cost,
                            tuple(self._tally.costs.problems))

    def _wait(self, writer: ResultWriter) -> tuple[bool, int]:
        """Report progress until the workers are done; Ctrl-C once stops, twice abandons."""
        interrupted = False
        try:
            while not self._finished.is_set():
                try:
                    self._finished.wait(self.tick)
                    writer.sync_if_due()
                    self._report()
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    self.stop()
        except KeyboardInterrupt:
            writer.close()  # in-flight runs that end now are dropped, not half-written
            with self._lock:
                return True, self._tally.in_flight
        self._report()
        return interrupted or self._stop.is_set(), 0

    def _feed(self, work: queue.Queue[Any], done: set[str], workers: int) -> None:
        try:
            for item in read_inputs(self.inputs):
                if self._stop.is_set():
                    break
                if item.key in done:
                    with self._lock:
                        self._tally.skipped += 1
                    continue
                while not self._stop.is_set():
                    try:
                        work.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # noqa: BLE001 - unreadable inputs end the batch, said by run()
            self._fail(exc)
        finally:
            with self._lock:
                self._skips_expected = 0  # counted now
            for _ in range(workers):
                work.put(_DONE)

    def _work(self, work: queue.Queue[Any], writer: ResultWriter) -> None:
        try:
            self._work_until_done(work, writer)
        finally:
            with self._lock:
                self._workers_left -= 1
                if not self._workers_left:
                    self._finished.set()

    def _work_until_done(self, work: queue.Queue[Any], writer: ResultWriter) -> None:
        while True:
            item = work.get()
            if item is _DONE:
                return
            if self._stop.is_set():
                continue  # not started: --resume runs it
            with self._lock:
                self._tally.in_flight += 1
            try:
                # None: the account failed, not the input; not written, so --resume runs it.
                outcome = self._run_one(item)
                written = outcome is not None and writer.write(outcome[0])
            except BaseException as exc:  # noqa: BLE001 - a surprise that would fail every run alike
                self._fail(exc)
                outcome, written = None, False
            with self._lock:
                self._tally.in_flight -= 1
                if written and outcome is not None:
                    self._tally.count(*outcome)

    def _run_one(self, item: InputLine) -> tuple[dict[str, Any], dict[str, Any] | None, RunRecord | None] | None:
        """One input's result line and its token usage; None if the batch halts on this run's failure."""
        result: dict[str, Any] = {"key": item.key, "line": item.line, "input": item.value, "status": "failed",
                                  "outputs": None, "usage": None, "cost": None, "error": None}
        if item.problem is not None:
            result["error"] = {"type": "InputError", "message": redact(item.problem), "step": None}
            return result, None, None
        values = item.value
        if "id" in values and "id" not in self.flow.inputs:
            values = {k: v for k, v in values.items() if k != "id"}
        try:
            record = self.engine.run(self.flow, values)
        except InputError as exc:
            result["error"] = {"type": "InputError", "message": redact(f"line {item.line}: {exc}"), "step": None}
            return result, None, None
        except UsageError:
            raise  # a problem of the flow or the setup, not of this input
        except Exception as exc:  # noqa: BLE001 - one input's surprise must not cost the others
            result["error"] = {"type": type(exc).__name__, "message": redact(str(exc)), "step": None}
            return result, None, None
        if self.on_record is not None:
            self.on_record(record)
        if halts_everything(record.exception):
            with self._lock:
                self._halted = self._halted or record.exception
            self.stop()
            return None
        result.update(status=record.status, outputs=record.outputs if record.status == "succeeded" else None,
                      usage=record.usage, cost=record.cost, error=record.error)
        warnings = [{"step": step.id, "message": text} for step in record.steps for text in step.warnings]
        if warnings:  # e.g. an answer cut at the token limit: succeeded, but not to go unseen
            result["warnings"] = warnings
        if self.full_record:
            result["record"] = record.to_dict()
        return result, record.usage, record

    def _count(self, event: Event, chained: EventHandler | None) -> None:
        if event.kind == "sent":
            with self._lock:
                self._tally.requests += 1
        if chained is not None:
            chained(event)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
        self.stop()

    def _progress(self) -> BatchProgress:
        with self._lock:
            t = self._tally
            return BatchProgress(self._total, max(t.skipped, self._skips_expected), t.succeeded, t.failed, t.in_flight, t.requests,
                                 t.usage.get("total_tokens", 0), time.monotonic() - self._started,
                                 self._stop.is_set())

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._progress())

