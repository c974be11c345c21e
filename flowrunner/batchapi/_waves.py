"""Waves: every run's next request waits in a wave; a wave goes out as Batch API files when no run can move.

Each input runs through the same `Engine.run` as a live batch, on a thread of its own, with a
`WaveTransport` that sends nothing: `complete(request)` files the request under a `custom_id`
(`KEY:N`, the N-th request of that input's run) and blocks until its answer arrives. Function
calls, structured-output repairs and retries happen exactly as live, so outputs equal a live
run's given the same answers. When every run held (at most `window` at once) is blocked on a
request, the requests filed are cut into a wave: sorted by custom_id, split into files at the
API's limits, uploaded, and a batch created for each. As a batch ends its answers are journaled,
then handed to the runs, which advance: they write their result, or file the next round's
request for the next wave. A retryable per-request error (a 429 or 5xx line) goes through the
step's retry policy as live (its backoff is not slept: the next wave is later anyway); a request
an expired or cancelled batch did not run is filed again, up to `MAX_RESUBMITS` times.

Resuming, the journal's answers are given back without sending (like a cassette), batches still in
flight are polled to their end, and a create whose answer was lost is found by its metadata tag:
no request is ever in two batches at once, and no wave's batch is created twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .._batch import BatchProgress, BatchRunner, BatchSummary
from .._batchio import InputLine, ResultWriter, count_inputs, read_inputs, read_results
from .._cassette import canonical_json
from .._engine import Engine
from .._exceptions import APIConnectionError, APIError, BatchJobError, ConfigError, ResponseError, RunError
from .._json import JSONError, loads, sendable
from .._lock import exclusive
from .._model import Flow
from .._pricing import Prices
from .._ratelimit import RateLimit
from .._replay import UNPACED, replaying
from .._retry import halts_everything
from .._transport import Completion, parse_completion, status_error
from ._client import ENDPOINT, BatchClient, BatchState
from ._journal import Answer, Journal, JournalState, Part, journal_path, read_journal

MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1000 * 1000
"""OpenAI's limits for one batch input file: 50,000 requests, 200 MB."""
MAX_RESUBMITS = 3
"""Times a request an expired or cancelled batch did not run is sent again before its run fails."""
_RESUBMIT_CODES = frozenset({"batch_expired", "batch_cancelled"})
_RETRYABLE_CODES = {"server_error": 500, "rate_limit_exceeded": 429, "timeout": 504}
"""Error-file codes of a request that failed inside the batch, and the live status the retry policy judges them as."""
_POLL_FAILURES = 10  # polls in a row that got no answer before the job stops (resumable)


@dataclass(frozen=True)
class JobSettings:
    """How a job runs; the defaults suit OpenAI."""

    window: int = 10_000
    """Runs held at once (each a thread blocked on its request); more inputs start as runs end."""
    max_requests: int = MAX_REQUESTS_PER_FILE
    max_bytes: int = MAX_BYTES_PER_FILE
    poll_first: float = 1.0
    poll_max: float = 60.0
    """Polls start `poll_first` seconds apart and back off (x1.5) to `poll_max`."""
    keep_files: bool = False


@dataclass(frozen=True)
class JobProgress:
    """Where a job stands, for the progress line."""

    runs: BatchProgress
    wave: int
    batches_in_flight: int
    requests_done: int
    """Of the requests in the batches in flight, those the server counts as done (completed or failed)."""
    requests_in_flight: int
    status: str
    """The batches' statuses, e.g. `in_progress` or `validating, in_progress`; `waiting` when none is out."""
    eta: float | None


@dataclass(frozen=True)
class JobSummary:
    """The live batch's summary plus what only a Batch API job has."""

    batch: BatchSummary
    job: str
    waves: int
    batches: int
    bytes_uploaded: int
    answered_from_journal: int


class _Stopped(BaseException):
    """Raised in a run's thread when the job stops: the run is dropped, not written; --resume redoes it."""


@dataclass
class _Request:
    cid: str
    hash: str
    line: bytes
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None
    failure: BaseException | None = None
    resubmits: int = 0


@dataclass
class _Flight:
    part: Part
    hashes: dict[str, str]
    submitted: float
    interval: float
    next_poll: float
    failures: int = 0


class _VirtualTime(threading.local):
    """Per run: the input's key, its request count, and a clock that moves only by retry waits."""

    key: str = ""
    requests: int = 0
    now: float = 0.0


class _NoPacing:
    """The rate limiter a Batch API run uses: its requests are not sent one by one, so none waits a turn."""

    learned = RateLimit()

    def acquire(self, tokens: int = 0, limit: Any = None, longest_wait: float = 0.0) -> Any:
        return UNPACED.acquire()


class WaveTransport:
    """The engine's transport in a Batch API job: a request waits for its wave's answer."""

    def __init__(self, job: BatchAPIJob):
        self.job = job
        self.local = _VirtualTime()

    def complete(self, request: dict[str, Any], on_chunk: Any = None,
                 on_sent: Callable[[], None] | None = None) -> Completion:
        local = self.local
        local.requests += 1
        cid = f"{local.key}:{local.requests}"
        body = dict(sendable(request))
        body.pop("stream", None)  # the Batch API answers whole: a streamed step gets its answer at once
        body.pop("stream_options", None)
        line = (canonical_json({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}) + "\n").encode()
        answer = self.job.ask(cid, hashlib.sha256(line).hexdigest()[:16], line)
        if on_sent is not None:
            on_sent()
        return completion_of(answer)

    def sleep(self, seconds: float) -> None:
        """A retry's wait: not slept (the next wave is later anyway), only counted on the run's own clock."""
        self.local.now += seconds

    def clock(self) -> float:
        return self.local.now


def completion_of(answer: Answer) -> Completion:
    """The completion a Batch API answer holds, or the error the engine's retry policy judges."""
    if answer.status == 200:
        return parse_completion(answer.body)
    if isinstance(answer.status, int):
        body = answer.body if isinstance(answer.body, dict) else {}
        return _raise(status_error(answer.status, body.get("error"), None, f"HTTP {answer.status} in a batch"))
    error = answer.error if isinstance(answer.error, dict) else {}
    if error.get("code") in _RETRYABLE_CODES:  # the request failed inside the batch: as a live 5xx or 429
        return _raise(APIError(f"the request failed inside the batch: {error.get('code')}: "
                               f"{str(error.get('message'))[:500]}", status=_RETRYABLE_CODES[error["code"]],
                               code=error["code"]))
    return _raise(BatchJobError(f"the Batch API could not run this request: {error.get('code')}: "
                                f"{str(error.get('message'))[:500]}"))


def _raise(error: BaseException) -> Completion:
    raise error


class BatchAPIJob(BatchRunner):
    """`flowrun batch --via batch-api`: the inputs' runs, round by round, through the Batch API."""

    def __init__(self, flow: Flow, inputs: str | Path, out: str | Path, client: BatchClient, *,
                 model: str | None = None, rate_limit: RateLimit | None = None, settings: JobSettings = JobSettings(),
                 resume: bool = False, retry_failed: bool = False, full_record: bool = False,
                 on_progress: Callable[[JobProgress], None] | None = None,
                 on_interrupt: Callable[[list[str]], bool] | None = None, tick: float = 0.2,
                 on_record: Callable[[Any], object] | None = None, prices: Prices | None = None):
        self.transport = WaveTransport(self)
        pacing: Any = _NoPacing()
        engine = Engine(self.transport, model=model, rate_limit=rate_limit, limiter=pacing,
                        sleep=self.transport.sleep, clock=self.transport.clock, prices=prices, batch_prices=True)
        super().__init__(engine, flow, inputs, out, concurrency=1, resume=resume, retry_failed=retry_failed,
                         full_record=full_record, tick=tick, on_record=on_record)
        self.client = client
        self.settings = settings
        self.on_job_progress = on_progress
        self.on_interrupt = on_interrupt
        """Asked, on Ctrl-C, with the batches in flight: True cancels them, False leaves them running."""
        self.journal: Journal | None = None
        self.job_id = ""
        self._changed = threading.Event()
        self._active = 0
        self._blocked = 0
        self._pending: list[_Request] = []
        self._waiting: dict[str, _Request] = {}
        self._answers: dict[str, Answer] = {}
        self._recovered: set[str] = set()
        """custom_ids in batches sent before a resume: their runs wait for those, never send them again."""
        self._flights: list[_Flight] = []
        self._wave = 0
        self._batches = 0
        self._uploaded = 0
        self._from_journal = 0
        self._exhausted = False
        self._stopping = False

    # --- the runs' side -------------------------------------------------------------------------------

    def ask(self, cid: str, digest: str, line: bytes) -> Answer:
        """The answer to one request: from the journal, or (blocking) from a wave."""
        with self._lock:
            if self._stopping:
                raise _Stopped
            self._tally.requests += 1
            known = self._answers.pop(cid, None)
            if known is not None and known.hash == digest:
                self._from_journal += 1
                return known
            request = _Request(cid, digest, line)
            self._waiting[cid] = request
            if cid not in self._recovered:
                self._pending.append(request)
            self._blocked += 1
        self._changed.set()
        request.done.wait()
        if request.failure is not None:
            raise request.failure
        assert request.answer is not None
        return request.answer

    def _deliver(self, request: _Request, answer: Answer | None, failure: BaseException | None = None) -> None:
        """Wake a run with its answer (or failure); called holding the lock."""
        request.answer, request.failure = answer, failure
        self._waiting.pop(request.cid, None)
        self._blocked -= 1
        request.done.set()

    def _run_thread(self, item: InputLine, writer: ResultWriter) -> None:
        self.transport.local.key, self.transport.local.requests, self.transport.local.now = item.key, 0, 0.0
        outcome = None
        try:
            outcome = self._run_one(item)
            written = outcome is not None and writer.write(outcome[0])
        except _Stopped:
            written = False
        except BaseException as exc:  # noqa: BLE001 - a surprise that would fail every run alike
            self._fail(exc)
            written = False
        with self._lock:
            self._active -= 1
            self._tally.in_flight = self._active
            if written and outcome is not None:
                self._tally.count(*outcome)  # its cost at the Batch API's half price (see Engine.batch_prices)
        self._changed.set()

    # --- the job's side -------------------------------------------------------------------------------

    def run(self) -> BatchSummary:
        return self.run_job().batch

    def run_job(self) -> JobSummary:
        self.engine.check_models(self.flow)
        total = count_inputs(self.inputs)
        with exclusive(self.out, "batch", "wait for that batch to end (or stop it), then --resume; or give "
                       "another --out file"):
            try:
                return self._job(total)
            finally:
                self.client.close()

    def _job(self, total: int) -> JobSummary:
        previous = read_results(self.out, repair=self.resume)
        path = journal_path(self.out)
        state = read_journal(path)
        if not self.resume and (previous.lines or previous.cut_torn_line or state.job is not None):
            raise ConfigError(f"{self.out} already holds a batch's results (or its journal {path} exists)\n"
                              "  hint: add --resume to finish that batch, or give a new --out file")
        wanted_again = {"failed"} if self.retry_failed else set()
        done = {key for key, status in previous.status.items() if status not in wanted_again}
        self.job_id = state.job or self._new_job_id()
        self.journal = Journal(path, state)
        if state.job is None:
            self.journal.add({"t": "job", "job": self.job_id})
        # --retry-failed asks the server again: the answers that failed those runs are not given back.
        failed = {key for key, status in previous.status.items() if status == "failed"} if self.retry_failed else set()
        self._answers = {cid: a for cid, a in state.answers.items() if cid.rpartition(":")[0] not in failed}
        self._wave = state.waves
        self._total, self._started = total, time.monotonic()
        self._skips_expected = min(len(done), total)
        writer = ResultWriter(self.out)
        interrupted = False
        try:
            self._recover(state)
            inputs = (item for item in read_inputs(self.inputs) if not self._skip(item, done))
            interrupted = self._loop(inputs, writer)
        finally:
            self._stop_runs()
            writer.close()
            self.journal.close()
        if self._fatal is not None:
            raise self._fatal
        if not interrupted and self._halted is None and not self._flights:
            self._clean_up(read_journal(path))
        summary = BatchSummary(self._progress(), dict(self._tally.usage), interrupted and self._halted is None,
                               0, previous.cut_torn_line, self._halted, self._tally.costs.cost,
                               tuple(self._tally.costs.problems))
        return JobSummary(summary, self.job_id, self._wave, self._batches, self._uploaded, self._from_journal)

    def _new_job_id(self) -> str:
        """The same for the same flow, inputs and results file name: a cassette's uploads and batch tags then
        match on replay. (Two such jobs at once would share batch tags; the lock on --out already refuses a
        second job on one results file, and requests of equal jobs are equal, so their answers would be too.)"""
        digest = hashlib.sha256()
        for path in (self.flow.path, self.inputs):
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                digest.update(uuid.uuid4().bytes)
        digest.update(self.out.name.encode())
        return digest.hexdigest()[:12]

    def _skip(self, item: InputLine, done: set[str]) -> bool:
        if item.key in done:
            with self._lock:
                self._tally.skipped += 1
            return True
        return False

    def _recover(self, state: JournalState) -> None:
        """Batches a killed job left: poll those made; find (by tag) those whose create got no answer."""
        for part in sorted(state.parts.values(), key=lambda p: (p.wave, p.part)):
            if part.done:
                continue
            if part.batch is None and part.tag is not None:
                found = self.client.find(part.tag)
                if found is not None:
                    part.batch = found.id
                    self._journal({"t": "batch", "w": part.wave, "p": part.part, "batch": found.id})
            if part.batch is None:  # never made: its file is of no use (its requests go in a new wave)
                if part.file is not None and not self.settings.keep_files:
                    self._delete(part.file)
                continue
            now = time.monotonic()
            self._flights.append(_Flight(part, dict(zip(part.cids, part.hashes)), now, self.settings.poll_first, now))
            self._recovered.update(cid for cid in part.cids if cid not in self._answers)

    def _loop(self, inputs: Iterator[InputLine], writer: ResultWriter) -> bool:
        """Start runs, cut waves, poll batches, until every run has ended; True if interrupted."""
        try:
            while True:
                self._changed.clear()
                self._fill(inputs, writer)
                with self._lock:
                    if self._halted is not None or self._fatal is not None or self._stop.is_set():
                        return self._stop.is_set() and self._halted is None
                    if self._active == 0 and self._exhausted:
                        return False
                    stuck = self._active == self._blocked and self._active > 0
                    cut = stuck and bool(self._pending)
                    wave, self._pending = (self._pending, []) if cut else ([], self._pending)
                    if stuck and not cut and not self._flights:
                        raise BatchJobError("internal error: every run waits, and nothing is in flight")
                if cut:
                    self._submit(wave)
                self._poll_due()
                self._report_job()
                due = min((f.next_poll for f in self._flights), default=time.monotonic() + self.tick)
                # A cassette's recorded polls answer at once: no wait for them.
                wait = 0.0 if replaying() and self._flights else min(due - time.monotonic(), self.tick)
                self._changed.wait(max(0.0, wait))
        except KeyboardInterrupt:
            self._interrupt()
            return True

    def _fill(self, inputs: Iterator[InputLine], writer: ResultWriter) -> None:
        while not self._exhausted and not self._stop.is_set():
            with self._lock:
                if self._active >= self.settings.window:
                    return
            try:
                item = next(inputs)
            except StopIteration:
                self._exhausted = True
                with self._lock:
                    self._skips_expected = 0
                return
            with self._lock:
                self._active += 1
                self._tally.in_flight = self._active
            threading.Thread(target=self._run_thread, args=(item, writer), name=f"batchapi-{item.key[:20]}",
                             daemon=True).start()

    def _submit(self, requests: list[_Request]) -> None:
        """One wave: its requests in files at the limits, each uploaded and made a batch."""
        self._wave += 1
        parts: list[list[_Request]] = []
        models = {r.cid: _model_of(r.line) for r in requests}
        for model in sorted(set(models.values())):
            # A batch runs one model: a flow whose steps use several sends a file per model.
            size, chunk = 0, [r for r in sorted(requests, key=lambda r: r.cid) if models[r.cid] == model]
            parts.append([])
            for request in chunk:
                if parts[-1] and (len(parts[-1]) >= self.settings.max_requests or
                                  size + len(request.line) > self.settings.max_bytes):
                    parts.append([])
                    size = 0
                parts[-1].append(request)
                size += len(request.line)
        for number, chunk in enumerate(parts, start=1):
            try:
                self._send_part(self._wave, number, chunk)
            except RunError as exc:
                self._halt(exc, chunk)
                return

    def _send_part(self, wave: int, number: int, chunk: list[_Request]) -> None:
        content = b"".join(r.line for r in chunk)
        file_id = self.client.upload(f"flowrun-{self.job_id}-w{wave}-p{number}.jsonl", content)
        self._uploaded += len(content)
        part = Part(wave, number, file=file_id, cids=[r.cid for r in chunk], hashes=[r.hash for r in chunk])
        self._journal({"t": "part", "w": wave, "p": number, "file": file_id, "cids": part.cids,
                       "hashes": part.hashes})
        part.tag = f"{self.job_id}:{wave}:{number}"
        self._journal({"t": "intent", "w": wave, "p": number, "tag": part.tag})
        try:
            made = self.client.create(file_id, part.tag)
        except APIConnectionError:
            # The create may have reached the server and its answer been lost: look before making another.
            found = self.client.find(part.tag)
            made = found if found is not None else self.client.create(file_id, part.tag)
        part.batch = made.id
        now = time.monotonic()
        self._batches += 1
        # In flight before it is journaled: a Ctrl-C from here on offers to cancel it.
        self._flights.append(_Flight(part, {r.cid: r.hash for r in chunk}, now, self.settings.poll_first,
                                     now + self.settings.poll_first))
        self._journal({"t": "batch", "w": wave, "p": number, "batch": made.id})

    def _poll_due(self) -> None:
        for flight in list(self._flights):
            if (flight.next_poll > time.monotonic() and not replaying()) or self._halted is not None:
                continue
            assert flight.part.batch is not None
            try:
                state = self.client.retrieve(flight.part.batch)
            except APIConnectionError as exc:
                flight.failures += 1
                if flight.failures >= _POLL_FAILURES:
                    self._halt(exc, [])
                flight.next_poll = time.monotonic() + self.settings.poll_max
                continue
            except RunError as exc:
                self._halt(exc, [])
                return
            flight.failures = 0
            part = flight.part
            counts = (state.total, state.completed, state.failed)
            if (state.status, counts) != (part.status, part.counts):
                part.status, part.counts = state.status, counts
                self._journal({"t": "status", "w": part.wave, "p": part.part, "status": state.status,
                               "counts": list(counts)})
            if not state.finished:
                flight.interval = min(flight.interval * 1.5, self.settings.poll_max)
                flight.next_poll = time.monotonic() + flight.interval
                continue
            try:
                self._land(flight, state)
            except RunError as exc:
                self._halt(exc, [])
                return
            self._flights.remove(flight)

    def _land(self, flight: _Flight, state: BatchState) -> None:
        """A finished batch: its answers journaled, then handed to the runs; what it did not run, filed again."""
        part = flight.part
        if state.status == "failed":
            # The file was refused whole (a queue limit, a bad line): the account-failure rule. Journaled as
            # done, so --resume files its requests in a new wave rather than finding this batch again.
            self._journal({"t": "done", "w": part.wave, "p": part.part, "status": state.status, "files": []})
            if part.file is not None and not self.settings.keep_files:
                self._delete(part.file)
            raise BatchJobError(f"batch {state.id} failed: " + ("; ".join(state.errors) or "no reason given") +
                                "\n  hint: fix what it names, then --resume (its requests go in a new batch)")
        answered: dict[str, Answer] = {}
        expected = set(part.cids)
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id is None:
                continue
            for line in self.client.lines(file_id):
                cid, answer = _answer(line, flight.hashes)
                if cid is not None and cid in expected and answer is not None:
                    answered[cid] = answer
        assert self.journal is not None
        for cid, answer in answered.items():
            self.journal.add({"t": "answer", "cid": cid, "h": answer.hash, "s": answer.status, "b": answer.body,
                              "e": answer.error}, sync=False)
        files = [f for f in (state.output_file_id, state.error_file_id) if f is not None]
        self._journal({"t": "done", "w": part.wave, "p": part.part, "status": state.status, "files": files})
        with self._lock:
            for cid in part.cids:
                self._recovered.discard(cid)
                request = self._waiting.get(cid)
                answer = answered.get(cid)
                if request is None:
                    if answer is not None:
                        self._answers[cid] = answer  # its run has not asked yet (resuming)
                elif answer is not None and answer.hash == request.hash:
                    self._deliver(request, answer)
                elif request.resubmits < MAX_RESUBMITS:
                    request.resubmits += 1
                    self._pending.append(request)
                else:
                    self._deliver(request, None, BatchJobError(
                        f"the Batch API did not run this request ({state.status} batch {state.id}), "
                        f"{MAX_RESUBMITS + 1} times\n  hint: --retry-failed tries it again"))
        self._changed.set()
        if not self.settings.keep_files:
            for file_id in [part.file, *files]:
                if file_id is not None:
                    self._delete(file_id)

    def _halt(self, error: BaseException, unsent: list[_Request]) -> None:
        """An account-level failure (a bad key, no quota, a refused file): stop; --resume goes on."""
        with self._lock:
            self._halted = self._halted or error
        self.stop()

    def _interrupt(self) -> None:
        """Ctrl-C: cancel the batches in flight, or leave them running, as the user says."""
        ids = [f.part.batch for f in self._flights if f.part.batch is not None]
        self.stop()
        if ids and self.on_interrupt is not None and self.on_interrupt(ids):
            for batch_id in ids:
                try:
                    self.client.cancel(batch_id)
                except RunError:
                    pass  # already ended, or unreachable: --resume will see its state

    def _stop_runs(self) -> None:
        """Wake every waiting run with `_Stopped` (their results are not written) and wait for them to leave."""
        with self._lock:
            self._stopping = True
            for request in list(self._waiting.values()):
                self._deliver(request, None, _Stopped())
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return
            time.sleep(0.01)

    def _clean_up(self, state: JournalState) -> None:
        """The job is done: delete what it left on the server (unless --keep-files); the journal stays."""
        if self.settings.keep_files:
            return
        for part in state.parts.values():
            for file_id in [part.file, *part.files]:
                if file_id is not None and file_id not in state.deleted:
                    self._delete(file_id)

    def _delete(self, file_id: str) -> None:
        try:
            self.client.delete(file_id)
        except RunError:
            return  # left behind (the server deletes batch files after 30 days); not worth failing for
        self._journal({"t": "deleted", "file": file_id}, sync=False)

    def _journal(self, entry: dict[str, Any], *, sync: bool = True) -> None:
        assert self.journal is not None
        self.journal.add(entry, sync=sync)

    def _report_job(self) -> None:
        if self.on_job_progress is None:
            return
        statuses = sorted({f.part.status or "validating" for f in self._flights})
        total = sum(f.part.counts[0] or len(f.part.cids) for f in self._flights)
        finished = sum(f.part.counts[1] + f.part.counts[2] for f in self._flights)
        eta = None
        if self._flights and finished:
            started = min(f.submitted for f in self._flights)
            eta = (time.monotonic() - started) * (total - finished) / finished
        self.on_job_progress(JobProgress(self._progress(), self._wave, len(self._flights), finished, total,
                                         ", ".join(statuses) or "waiting", eta))


def _model_of(line: bytes) -> str:
    """The model a request line names (the engine always sets one)."""
    body = loads(line).get("body")
    return str(body.get("model")) if isinstance(body, dict) else ""


def _answer(line: Any, hashes: dict[str, str]) -> tuple[str | None, Answer | None]:
    """One output or error file line: its custom_id, and its answer (None: not run, send it again)."""
    if isinstance(line, JSONError) or not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return None, None
    cid = line["custom_id"]
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        return cid, Answer(hashes.get(cid, ""), response["status_code"], response.get("body"), None)
    if isinstance(error, dict):
        if error.get("code") in _RESUBMIT_CODES:
            return cid, None
        return cid, Answer(hashes.get(cid, ""), None, None, {"code": str(error.get("code"))[:200],
                                                           "message": str(error.get("message"))[:2000]})
    return cid, None

