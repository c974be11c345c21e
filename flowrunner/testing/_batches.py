"""The test server's Batch API: `/v1/batches` and `/v1/files` on a clock the tests control.

    with ChatServer(batch=BatchSettings(speed=0)) as server:      # a clock that stands still
        ...client.files.create(...), client.batches.create(...)
        server.batches.advance(1)        # validating -> in_progress
        server.batches.complete_all()    # ... -> finalizing -> completed

A batch moves through OpenAI's states on `BatchClock` time (`_clock`): `validating` for
`settings.validating` seconds; then the input file's verdict: `failed` with `errors.data` (a bad
line or too many, as `_batchinput` checks them; a queue limit), or `in_progress`, answering `lines_per_second` lines a second;
`finalizing` for `settings.finalizing` seconds once every line is answered; then `completed`. A
batch not done by `expires_at` (created + 24 h) is `expired`: the lines answered so far are in the
output or error file, the rest in the error file with code `batch_expired`. A cancel makes it
`cancelling` (no more lines are answered) and `settings.cancelling` seconds later `cancelled`, with
the partial results; lines never answered appear in neither file. Time is applied lazily: each
request (and `advance`) brings every batch up to the clock's now, answering the lines due.

Each line is answered by the chat endpoint's own machinery (`ChatServer.answer_batch_line`): the
spec check, then the oldest `enqueue`d Reply or the rules, so a line's answer equals the live
answer to the same body. A 2xx answer goes to the output file, any other status to the error file
(`response.status_code` and the error body); a Reply whose fault breaks the connection (`drop`,
`reset`, `hang`, `truncate`, `trickle`) has no HTTP answer to give, so its line gets
`response: null, error: {"code": "server_error", ...}`; a Reply's delay is ignored. Output and
error lines are written in a deterministic order that is never the input order (when there are
two lines or more): clients must match on `custom_id`.

Limits (`BatchSettings`): `max_lines` a file (50,000), `max_bytes` a file (200 MB, checked on
upload), and per model the requests and prompt tokens (counted as the rules count them: words)
that batches in progress may hold (`enqueued_requests`, `enqueued_tokens`; unlimited by default):
a batch that would pass one fails with `token_limit_exceeded` / `request_limit_exceeded`, worded
as OpenAI's. Faults for clients' tests: `fail_next`, `expire_next`, `cancel_next` (what happens to
the next batches created), and `enqueue(route, *replies)` (the next requests to a route get these
replies instead, e.g. a 500 on an upload). `stats` counts what was created.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from flowrunner import _json
from flowrunner.testing import _batchspec
from flowrunner.testing._batchinput import ENDPOINT, batch_error, parse, prompt_tokens
from flowrunner.testing._clock import BatchClock, check_speed
from flowrunner.testing._files import FileStore, StoredFile, too_large
from flowrunner.testing._reply import Reply, check_seconds, error_reply
from flowrunner.testing.faults import ORGANIZATION

if TYPE_CHECKING:
    from flowrunner.testing.server import ReceivedRequest

WINDOW = "24h"
ROUTES = ("upload", "file", "content", "delete", "files", "create", "retrieve", "list", "cancel")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_NETWORK_FAULTS = frozenset({"drop", "reset", "hang", "truncate", "trickle"})


@dataclass(frozen=True)
class BatchSettings:
    """How the Batch API behaves: its clock, how long each phase takes, its limits."""

    speed: float = 1.0               # simulated seconds per real second; 0: only `advance` moves time
    validating: float = 1.0          # simulated seconds a batch validates
    lines_per_second: float = 1000.0  # lines answered per simulated second (math.inf: all at once)
    finalizing: float = 1.0
    cancelling: float = 1.0
    window: float = 86400.0          # completion_window "24h"
    max_lines: int = 50_000
    max_bytes: int = 200_000_000
    enqueued_tokens: int | None = None    # per model, over the batches in progress
    enqueued_requests: int | None = None  # per model, likewise

    def __post_init__(self) -> None:
        check_speed(self.speed)
        for name in ("validating", "finalizing", "cancelling", "window"):
            check_seconds(name, getattr(self, name))
        if not (isinstance(self.lines_per_second, (int, float)) and self.lines_per_second > 0):
            raise ValueError(f"lines_per_second must be > 0 (math.inf: at once), got {self.lines_per_second!r}")
        for name in ("max_lines", "max_bytes", "enqueued_tokens", "enqueued_requests"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name} must be a whole number > 0, got {value!r}")


@dataclass(frozen=True)
class BatchStats:
    """What clients created: uploads, batches, per input file, and every custom_id submitted."""

    files_uploaded: int
    files_deleted: int
    batches_created: int
    batches_by_input_file: dict[str, int]
    custom_ids: dict[str, int]  # how many created batches held each custom_id

    def submitted_twice(self) -> list[str]:
        """The custom_ids that were in more than one batch."""
        return sorted(c for c, n in self.custom_ids.items() if n > 1)


@dataclass
class _Batch:
    id: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: float
    expires_at: float
    lines: list[tuple[str, dict[str, Any]]]
    invalid: list[dict[str, Any]]  # errors.data if the file is bad
    model: str | None
    tokens: int
    fate: str | None = None  # "expire" or "cancel": the server ends it half-way
    fail_with: dict[str, Any] | None = None
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)  # in_progress, finalizing, ...
    done: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    def to_object(self) -> dict[str, Any]:
        """The spec's `Batch`."""
        def at(name: str) -> int | None:
            return int(self.times[name]) if name in self.times else None

        return {
            "id": self.id, "object": "batch", "endpoint": ENDPOINT, "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": WINDOW, "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": int(self.created_at), "in_progress_at": at("in_progress"),
            "expires_at": int(self.expires_at), "finalizing_at": at("finalizing"),
            "completed_at": at("completed"), "failed_at": at("failed"), "expired_at": at("expired"),
            "cancelling_at": at("cancelling"), "cancelled_at": at("cancelled"),
            "request_counts": {"total": 0 if self.status in ("validating", "failed") else len(self.lines),
                               "completed": len(self.outputs), "failed": len(self.failures)},
            "usage": {"input_tokens": self.usage["prompt_tokens"],
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": self.usage["completion_tokens"],
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": self.usage["total_tokens"]},
            "metadata": self.metadata,
        }


class BatchAPI:
    """Files and batches for one `ChatServer`; thread-safe (one lock around all of it)."""

    def __init__(self, answer_line: Callable[[Any], Reply], settings: BatchSettings | None = None) -> None:
        self.settings = settings or BatchSettings()
        self.clock = BatchClock(self.settings.speed)
        self._answer_line = answer_line
        self._lock = threading.RLock()
        self._files = FileStore(self.settings.max_bytes)
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._fates: deque[tuple[str, dict[str, Any] | None]] = deque()
        self._scripted: dict[str, deque[Reply]] = {route: deque() for route in ROUTES}
        self._uploads = self._deletes = 0
        self._by_input: Counter[str] = Counter()
        self._custom_ids: Counter[str] = Counter()

    # -- what tests call ----------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward and bring every batch up to it."""
        with self._lock:
            self.clock.advance(seconds)
            self._update_all()

    def complete_all(self) -> None:
        """Advance the clock until every batch has ended: completed, or failed, expired or
        cancelled where it was going to."""
        with self._lock:
            for _ in range(8):  # each pass ends at least one phase of every batch
                self._update_all()
                waits = [self._next_change(b) for b in self._batches.values() if b.status not in TERMINAL]
                if not waits:
                    return
                self.clock.advance(max(0.0, max(waits) - self.clock.now()) + 1e-6)

    def fail_next(self, count: int = 1, error: dict[str, Any] | None = None) -> None:
        """The next `count` batches created fail when validated, with `error` (a `BatchError`;
        by default the enqueued-token-limit error OpenAI gives)."""
        with self._lock:
            self._fates.extend([("fail", error)] * count)

    def expire_next(self, count: int = 1) -> None:
        """The next `count` batches created expire once half their lines are answered."""
        with self._lock:
            self._fates.extend([("expire", None)] * count)

    def cancel_next(self, count: int = 1) -> None:
        """The next `count` batches created are cancelled by the server once half their lines are
        answered (`cancelling`, then `cancelled`)."""
        with self._lock:
            self._fates.extend([("cancel", None)] * count)

    def enqueue(self, route: str, *replies: Reply) -> None:
        """The next requests to `route` (one of `ROUTES`: upload, create, retrieve, cancel, list,
        content, file, delete, files) get `replies` instead, oldest first; nothing is created."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of: {', '.join(ROUTES)}")
        with self._lock:
            self._scripted[route].extend(replies)

    @property
    def stats(self) -> BatchStats:
        """A snapshot of what was created so far."""
        with self._lock:
            return BatchStats(self._uploads, self._deletes, sum(self._by_input.values()),
                              dict(self._by_input), dict(self._custom_ids))

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """A batch as `GET /v1/batches/{id}` would return it (KeyError if unknown)."""
        with self._lock:
            self._update_all()
            return self._batches[batch_id].to_object()

    def file_content(self, file_id: str) -> bytes:
        """A file's bytes (KeyError if unknown)."""
        with self._lock:
            return self._files.files[file_id].data

    def body_limit(self) -> int:
        """The most bytes an upload may send: the file limit plus room for the multipart framing."""
        return self.settings.max_bytes + 65536

    # -- HTTP ---------------------------------------------------------------------------------

    def answer(self, request: ReceivedRequest) -> Reply:
        """The reply to a request under /v1/files or /v1/batches (already authorized)."""
        parts = request.path.rstrip("/").split("/")[2:]  # ["files", id, "content"] ...
        route, allowed = _route(parts, request.method)
        if route is None:
            if allowed:
                return error_reply(405, f"Method {request.method} is not allowed on {request.path}; "
                                   f"use {' or '.join(allowed)}.", allow=", ".join(allowed))
            return error_reply(404, f"Invalid URL ({request.method} {request.path})")
        with self._lock:
            if self._scripted[route]:
                return self._scripted[route].popleft()
            self._update_all()
            now = self.clock.now()
            query = {k: v[-1] for k, v in parse_qs(request.query).items()}
            return _reply(self._dispatch(route, parts, request, query, now))

    def _dispatch(self, route: str, parts: list[str], request: ReceivedRequest,
                  query: dict[str, str], now: float) -> dict[str, Any] | Reply:
        if route == "upload":
            uploaded = self._files.upload(request.headers.get("content-type", ""), request.raw, now)
            if isinstance(uploaded, StoredFile):
                self._uploads += 1
                return uploaded.to_object()
            return uploaded
        if route == "files":
            limit = _int_param(query, "limit", 10000, 1, 10000)
            if isinstance(limit, Reply):
                return limit
            return self._files.listing(query.get("purpose"), limit, query.get("order", "desc"), query.get("after"))
        if route in ("file", "content", "delete"):
            if route == "delete":
                deleted = self._files.delete(parts[1])
                self._deletes += not isinstance(deleted, Reply)
                return deleted
            found = self._files.get(parts[1])
            if isinstance(found, Reply):
                return found
            return found.to_object() if route == "file" else Reply(
                body=found.data, content_type="application/octet-stream")
        if route == "create":
            return self._create(request.body, now)
        if route == "list":
            limit = _int_param(query, "limit", 20, 1, 100)
            if isinstance(limit, Reply):
                return limit
            return self._listing(limit, query.get("after"))
        batch = self._batches.get(parts[1])
        if batch is None:
            return error_reply(404, f"No batch found with id '{parts[1][:100]}'.", param="batch_id")
        if route == "cancel":
            return self._cancel(batch, now)
        return batch.to_object()

    def _create(self, body: Any, now: float) -> dict[str, Any] | Reply:
        problems = _batchspec.problems("CreateBatchRequest", body)
        if problems:
            return error_reply(400, problems[0].message, param=problems[0].param)
        if body["endpoint"] != ENDPOINT:
            return error_reply(400, f"flowrunner's test server runs batches for {ENDPOINT} only, "
                               f"not {body['endpoint']!r}.", param="endpoint")
        metadata = body.get("metadata")
        if metadata is not None and (len(metadata) > 16 or any(
                len(k) > 64 or len(v) > 512 for k, v in metadata.items())):
            return error_reply(400, "Invalid 'metadata': at most 16 pairs, keys of at most 64 "
                               "characters, values of at most 512.", param="metadata")
        found = self._files.get(body["input_file_id"])
        if isinstance(found, Reply):
            return found
        if found.purpose != "batch":
            return error_reply(400, f"The file {found.id} has purpose {found.purpose!r}; a batch's "
                               "input file must be uploaded with purpose 'batch'.", param="input_file_id")
        if len(found.data) > self.settings.max_bytes:
            return too_large(len(found.data), self.settings.max_bytes)
        lines, invalid, model = parse(found.data, self.settings.max_lines)
        digest = hashlib.sha256(f"flowrunner-batch-{next(self._ids)}".encode()).hexdigest()
        fate, fail_with = self._fates.popleft() if self._fates else (None, None)
        batch = _Batch(id="batch_" + digest[:32], input_file_id=found.id, metadata=metadata,
                       created_at=now, expires_at=now + self.settings.window, lines=lines,
                       invalid=invalid, model=model, tokens=sum(prompt_tokens(b) for _, b in lines),
                       fate=fate, fail_with=fail_with)
        if fate == "fail":
            batch.fail_with = fail_with or _queue_error("token", model or "gpt-4o-mini", 90_000)
        self._batches[batch.id] = batch
        self._by_input[found.id] += 1
        self._custom_ids.update(c for c, _ in lines)
        return batch.to_object()

    def _listing(self, limit: int, after: str | None) -> dict[str, Any]:
        batches = list(reversed(self._batches.values()))  # newest first, as OpenAI lists them
        if after is not None:
            index = next((i for i, b in enumerate(batches) if b.id == after), None)
            batches = batches[index + 1:] if index is not None else []
        page = [b.to_object() for b in batches[:limit]]
        listing: dict[str, Any] = {"object": "list", "data": page, "has_more": len(batches) > limit}
        if page:
            listing.update(first_id=page[0]["id"], last_id=page[-1]["id"])
        return listing

    def _cancel(self, batch: _Batch, now: float) -> dict[str, Any] | Reply:
        if batch.status in ("validating", "in_progress"):
            batch.status = "cancelling"
            batch.times["cancelling"] = now
        elif batch.status not in ("cancelling", "cancelled"):
            return error_reply(409, f"Cannot cancel a batch with status '{batch.status}'.")
        return batch.to_object()

    # -- the clock ----------------------------------------------------------------------------

    def _update_all(self) -> None:
        now = self.clock.now()
        for batch in self._batches.values():
            if batch.status not in TERMINAL:
                self._update(batch, now)

    def _next_change(self, batch: _Batch) -> float:
        """When the batch's current phase ends (for `complete_all`)."""
        settings = self.settings
        if batch.status == "validating":
            return batch.created_at + settings.validating
        if batch.status == "in_progress":
            return min(batch.expires_at, self._line_time(batch, self._stop(batch)))
        if batch.status == "finalizing":
            return batch.times["finalizing"] + settings.finalizing
        return batch.times["cancelling"] + settings.cancelling

    def _stop(self, batch: _Batch) -> int:
        """How many lines the batch answers before it ends (half, if the server ends it early)."""
        return len(batch.lines) // 2 if batch.fate in ("expire", "cancel") else len(batch.lines)

    def _line_time(self, batch: _Batch, count: int) -> float:
        """When the first `count` lines are answered."""
        rate = self.settings.lines_per_second
        return batch.times["in_progress"] + (0.0 if math.isinf(rate) else count / rate)

    def _due(self, batch: _Batch, at: float) -> int:
        rate = self.settings.lines_per_second
        if math.isinf(rate):
            return len(batch.lines)
        return min(len(batch.lines), int((at - batch.times["in_progress"]) * rate + 1e-9))

    def _update(self, batch: _Batch, now: float) -> None:
        """Move `batch` through every phase that has ended by `now`, answering the lines due."""
        settings = self.settings
        if batch.status == "validating" and now >= batch.created_at + settings.validating:
            self._validated(batch, batch.created_at + settings.validating)
        if batch.status == "in_progress":
            stop = self._stop(batch)
            finish = self._line_time(batch, stop)
            if finish > batch.expires_at and now >= batch.expires_at:
                self._answer(batch, min(stop, self._due(batch, batch.expires_at)))
                self._expire(batch, batch.expires_at)
            elif now >= finish:
                self._answer(batch, stop)
                if batch.fate == "expire" and stop < len(batch.lines):
                    self._expire(batch, finish)
                elif batch.fate == "cancel" and stop < len(batch.lines):
                    batch.status, batch.times["cancelling"] = "cancelling", finish
                else:
                    batch.status, batch.times["finalizing"] = "finalizing", finish
            else:
                self._answer(batch, min(stop, self._due(batch, now)))
        if batch.status == "finalizing" and now >= batch.times["finalizing"] + settings.finalizing:
            self._end(batch, "completed", batch.times["finalizing"] + settings.finalizing)
        if batch.status == "cancelling" and now >= batch.times["cancelling"] + settings.cancelling:
            self._end(batch, "cancelled", batch.times["cancelling"] + settings.cancelling)

    def _validated(self, batch: _Batch, at: float) -> None:
        errors = batch.invalid or ([batch.fail_with] if batch.fail_with else self._queue_full(batch))
        if errors:
            batch.status, batch.errors, batch.times["failed"] = "failed", errors, at
        else:
            batch.status, batch.times["in_progress"] = "in_progress", at

    def _queue_full(self, batch: _Batch) -> list[dict[str, Any]]:
        """The queue-limit error if this batch would take its model's queue over a limit."""
        held = [b for b in self._batches.values() if b is not batch and b.model == batch.model
                and b.status in ("in_progress", "finalizing")]
        tokens, requests = self.settings.enqueued_tokens, self.settings.enqueued_requests
        model = batch.model or "gpt-4o-mini"
        if tokens is not None and batch.tokens + sum(b.tokens for b in held) > tokens:
            return [_queue_error("token", model, tokens)]
        if requests is not None and len(batch.lines) + sum(len(b.lines) for b in held) > requests:
            return [_queue_error("request", model, requests)]
        return []

    def _answer(self, batch: _Batch, upto: int) -> None:
        """Answer lines `batch.done` .. `upto - 1`, as the chat endpoint would."""
        for custom_id, body in batch.lines[batch.done:upto]:
            line_id = hashlib.sha256(f"{batch.id}/{custom_id}".encode()).hexdigest()
            reply = self._answer_line(body)
            if reply.fault in _NETWORK_FAULTS:
                batch.failures.append(_failed_line(line_id, custom_id, "server_error",
                                      f"The request failed inside the batch (the test server's "
                                      f"scripted fault {reply.fault!r})."))
                continue
            answer = reply.body
            if isinstance(answer, (bytes, str)):
                text = answer.decode("utf-8", errors="replace") if isinstance(answer, bytes) else answer
                try:
                    answer = _json.loads(text)
                except _json.JSONError:
                    answer = text
            line = {"id": "batch_req_" + line_id[:32], "custom_id": custom_id,
                    "response": {"status_code": reply.status, "request_id": "req_" + line_id[32:64],
                                 "body": answer}, "error": None}
            if 200 <= reply.status < 300:
                batch.outputs.append(line)
                usage = answer.get("usage") if isinstance(answer, dict) else None
                if isinstance(usage, dict):
                    batch.usage.update({k: v for k, v in usage.items() if type(v) is int})
            else:
                batch.failures.append(line)
        batch.done = max(batch.done, upto)

    def _expire(self, batch: _Batch, at: float) -> None:
        for custom_id, _ in batch.lines[batch.done:]:
            line_id = hashlib.sha256(f"{batch.id}/{custom_id}".encode()).hexdigest()
            batch.failures.append(_failed_line(line_id, custom_id, "batch_expired", "This request could "
                                  "not be executed before the completion window expired."))
        batch.done = len(batch.lines)
        self._end(batch, "expired", at)

    def _end(self, batch: _Batch, status: str, at: float) -> None:
        """Write the output and error files (null ids when empty) and take the final status."""
        for lines, attribute, kind in ((batch.outputs, "output_file_id", "output"),
                                       (batch.failures, "error_file_id", "error")):
            if lines:
                # The stdlib's dumps: these are the server's own values (ASCII-escaped, so a lone
                # surrogate in a scripted reply is written as its escape).
                data = "".join(json.dumps(line) + "\n" for line in _shuffled(batch.id, lines))
                stored = self._files.add(f"{batch.id}_{kind}.jsonl", "batch_output", data.encode(), at)
                setattr(batch, attribute, stored.id)
        batch.status, batch.times[status] = status, at


def _route(parts: list[str], method: str) -> tuple[str | None, tuple[str, ...]]:
    """The route a path and method name, or None and the methods the path allows."""
    table: dict[tuple[str, int, str | None], dict[str, str]] = {
        ("files", 1, None): {"POST": "upload", "GET": "files"},
        ("files", 2, None): {"GET": "file", "DELETE": "delete"},
        ("files", 3, "content"): {"GET": "content"},
        ("batches", 1, None): {"POST": "create", "GET": "list"},
        ("batches", 2, None): {"GET": "retrieve"},
        ("batches", 3, "cancel"): {"POST": "cancel"},
    }
    if not parts or any(not p for p in parts):
        return None, ()
    methods = table.get((parts[0], len(parts), parts[2] if len(parts) == 3 else None), {})
    return methods.get(method), tuple(methods)


def _reply(result: dict[str, Any] | Reply) -> Reply:
    return result if isinstance(result, Reply) else Reply(body=result)


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int | Reply:
    text = query.get(name)
    if text is None:
        return default
    if not text.strip().isdigit() or not low <= int(text) <= high:
        return error_reply(400, f"Invalid '{name}': expected a whole number from {low} to {high}, "
                           f"got {text[:50]!r}.", param=name)
    return int(text)


def _queue_error(kind: str, model: str, limit: int) -> dict[str, Any]:
    """OpenAI's error for a batch over its model's enqueued-token or enqueued-request limit."""
    return batch_error(f"{kind}_limit_exceeded", f"Enqueued {kind} limit reached for {model} in organization "
                  f"{ORGANIZATION}. Limit: {limit:,} enqueued {kind}s. Please try again once some "
                  "in_progress batches have been completed.")


def _failed_line(line_id: str, custom_id: str, code: str, message: str) -> dict[str, Any]:
    return {"id": "batch_req_" + line_id[:32], "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def _shuffled(batch_id: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`lines` in a deterministic order that differs from theirs when there are two or more."""
    order = sorted(lines, key=lambda line: hashlib.sha256(f"{batch_id}/{line['custom_id']}".encode()).digest())
    if len(order) > 1 and all(a is b for a, b in zip(order, lines)):
        order = order[1:] + order[:1]
    return order


# -- the command line (python -m flowrunner.testing.server) ----------------------------------------

_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("speed", float, "simulated seconds per real second on the batch clock (default 1; 0 stands still)"),
    ("validating", float, "simulated seconds a batch validates (default 1)"),
    ("lines_per_second", float, "batch lines answered per simulated second (default 1000; inf: at once)"),
    ("finalizing", float, "simulated seconds a batch finalizes (default 1)"),
    ("cancelling", float, "simulated seconds a cancelled batch is cancelling (default 1)"),
    ("max_lines", int, "requests a batch input file may hold (default 50000)"),
    ("max_bytes", int, "bytes a batch input file may have (default 200000000)"),
    ("enqueued_tokens", int, "prompt tokens per model the batches in progress may hold (default: no limit)"),
    ("enqueued_requests", int, "requests per model the batches in progress may hold (default: no limit)"),
)


def add_arguments(parser: Any) -> None:
    """The `--batch-*` options of the server's command line."""
    for name, kind, text in _FLAGS:
        parser.add_argument("--batch-" + name.replace("_", "-"), type=kind, default=None, help=text,
                            metavar="N")


def settings_from(args: Any) -> BatchSettings:
    """`BatchSettings` from the parsed `--batch-*` options (ValueError naming a bad one)."""
    given = {name: getattr(args, "batch_" + name) for name, _, _ in _FLAGS
             if getattr(args, "batch_" + name) is not None}
    for name, value in given.items():
        try:
            BatchSettings(**{name: value})
        except ValueError as exc:
            raise ValueError(f"--batch-{name.replace('_', '-')}: {exc}") from None
    return BatchSettings(**given)
