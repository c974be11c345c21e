"""An OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and offline demos.

    with ChatServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")

`POST /v1/chat/completions` answers in this order:
1. with `api_key` set, a missing or wrong `Authorization: Bearer ...` gets OpenAI's 401;
2. a body that is not JSON, or does not validate against OpenAI's `CreateChatCompletionRequest`
   (or has a top-level parameter the spec does not know), gets OpenAI's 400 error shape; this
   happens even when replies are queued, and the queued reply stays queued: a real server would
   reject that request too;
3. with `limits` (`Limits(rpm, tpm, rpd, window, headers)`, see `flowrunner.testing._limits`;
   `headers="minute"` states the limits per minute as OpenAI does while enforcing them per window), a request
   over a limit gets OpenAI's 429 with `retry-after-ms`; it is not counted, and the queued reply
   stays queued. With limits, every answer from here on (refused or not) carries the
   `x-ratelimit-*` headers; `server.stats` counts what was accepted and refused;
4. the oldest `Reply` queued with `enqueue`, served exactly as given (not validated), with its
   own `delay` and `fault` (`flowrunner.testing.faults` builds OpenAI's errors and the faults,
   `_reply.FAULTS` says what each does);
5. otherwise the deterministic rules of `flowrunner.testing._rules` (their docstring says what
   they answer). With `validate_responses`, the server checks its own answer against the spec
   and sends a 500 naming the rule if it is invalid, so a broken rule fails the tests loudly.
Every request is recorded in `server.requests` first, whatever the answer. Then, with `latency`,
every answer on the endpoint waits that long (on its own thread: concurrent requests overlap),
plus the reply's `delay`; then its `fault`, if any, breaks the exchange. `stop()` cuts such waits
short, closing the connection unanswered. `GET /v1/models` lists the one model; other paths get
404, other methods on the endpoint 405.

Streams are sent whole, with a Content-Length, so keep-alive works as for any other answer. With
`chunk_delay` (the server's, for every `text/event-stream` answer, or a `Reply`'s own), a stream is
paced instead: each event is its own HTTP chunk (`Transfer-Encoding: chunked`, so keep-alive still
works), written `chunk_delay` seconds after the one before, as a model generating its answer would;
the events and the final `[DONE]` are the same, only their timing changes.

`/v1/files` and `/v1/batches` are OpenAI's Files and Batch API (`flowrunner.testing._batches` says
how batches move on their clock, `server.batches` holds the clock, the faults and the counts): the
401 above applies to them; the rate limits do not (batches have their own queue limits), and each
batch line is answered as steps 2, 4 and 5 would answer the same body here.

Run `python -m flowrunner.testing.server --port 8765 [--latency 0.1] [--chunk-delay 0.05]
[--rpm N] [--tpm N] [--rpd N] [--window S] [--headers minute] [--api-key K] [--batch-speed N]
[--batch-validating S] [--batch-lines-per-second N] [--batch-finalizing S] [--batch-cancelling S]
[--batch-max-lines N] [--batch-max-bytes N] [--batch-enqueued-tokens N] [--batch-enqueued-requests N]`
to serve until Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from flowrunner.testing import _rules, _spec, faults
from flowrunner.testing._limits import HEADER_MODES, Limiter, Limits, Stats
from flowrunner.testing._reply import Reply as Reply
from flowrunner.testing._reply import error_reply as error_reply
from flowrunner.testing._reply import check_seconds, sse_events

if TYPE_CHECKING:
    from flowrunner.testing._batches import BatchAPI, BatchSettings, BatchStats

MODEL_ID = "flowrunner-rules"
# Written by the server itself (the content type via `Reply.payload`), never copied from a Reply.
_COMPUTED_HEADERS = {"content-length", "transfer-encoding", "connection", "content-type"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it; `headers` has lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None if there was no body or it was not JSON
    raw: bytes
    arrived: float | None = None  # time.monotonic() when its request line came in
    query: str = ""  # what followed the `?` of the path


class ChatServer:
    """The test server; a context manager that starts it on entry and stops it on exit."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", api_key: str | None = None,
                 validate_responses: bool = True, limits: Limits | None = None,
                 latency: float = 0.0, chunk_delay: float = 0.0,
                 batch: BatchSettings | None = None) -> None:
        check_seconds("latency", latency)
        check_seconds("chunk_delay", chunk_delay)
        self.host, self.port = host, port
        self.api_key = api_key
        self.validate_responses = validate_responses
        self.limits = limits
        self.latency = float(latency)
        self.chunk_delay = float(chunk_delay)  # between the events of every stream, unless a Reply says
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._replies: deque[Reply] = deque()
        self._limiter = Limiter(limits)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._batch_settings = batch
        self._batch_api: BatchAPI | None = None

    @property
    def base_url(self) -> str:
        """The `base_url` for the SDK: `http://127.0.0.1:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> Stats:
        """What the limits admitted so far: accepted chat requests, their times, the 429s by kind."""
        with self._lock:
            return self._limiter.stats()

    @property
    def batches(self) -> BatchAPI:
        """The Files and Batch API (`flowrunner.testing._batches`): its clock, faults and stats."""
        with self._lock:
            if self._batch_api is None:
                from flowrunner.testing._batches import BatchAPI

                self._batch_api = BatchAPI(self.answer_batch_line, self._batch_settings)
            return self._batch_api

    @property
    def batch_stats(self) -> BatchStats:
        """What clients created through the Batch API: uploads, batches, custom_ids submitted."""
        return self.batches.stats

    def enqueue(self, *replies: Reply) -> None:
        """Queue scripted replies; each valid chat request takes the oldest one before the rules."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> ChatServer:
        """Bind (a free port if `port` is 0) and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        # A short poll interval: `stop` waits for it, and tests start and stop many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name="ChatServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; answers already being sent finish on their threads,
        while hanging or delayed ones are cut off (their connections close unanswered)."""
        if self._httpd is None:
            return
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def answer(self, request: ReceivedRequest) -> Reply:
        """The reply to one request (the decision order is in the module docstring)."""
        self._record(request)
        if request.path.rstrip("/") == "/v1/models" and request.method == "GET":
            return self._authorize(request) or Reply(body={"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "flowrunner"}]})
        if request.path.startswith(("/v1/files", "/v1/batches")):
            return self._authorize(request) or self.batches.answer(request)
        if request.path.rstrip("/") != "/v1/chat/completions":
            return error_reply(404, f"Invalid URL ({request.method} {request.path})")
        if request.method != "POST":
            return error_reply(405, f"Method {request.method} is not allowed on {request.path}; "
                               "use POST.", allow="POST")
        reply = self._authorize(request) or self._check(request) or self._admit(request)
        if (self.chunk_delay and reply.chunk_delay is None
                and reply.media_type().startswith("text/event-stream")):
            reply = replace(reply, chunk_delay=self.chunk_delay)
        return replace(reply, delay=reply.delay + self.latency) if self.latency else reply

    def answer_batch_line(self, body: Any) -> Reply:
        """A batch line's answer, as `POST /v1/chat/completions` would give it without the rate
        limits (the Batch API has its own queue): the spec check, then a queued reply or the rules."""
        reply = self._check(ReceivedRequest("POST", "/v1/chat/completions", {}, body, b""))
        if reply is None and isinstance(body, dict) and body.get("stream"):
            reply = error_reply(400, "Streaming is not supported in the Batch API.", param="stream")
        if reply is not None:
            return reply
        with self._lock:
            queued = self._replies.popleft() if self._replies else None
        return queued or self._from_rules(body)[0]

    def _admit(self, request: ReceivedRequest) -> Reply:
        """Limits first (a refused request leaves the queue alone), then a queued reply or the
        rules; the rate-limit headers go on whichever answer, unless a queued reply sets them."""
        body: dict[str, Any] = request.body
        # A token limit needs the answer's cost before admitting it: then the rules answer first
        # (outside the lock), and that answer is the one sent if nothing is queued.
        ruled = self._from_rules(body) if self.limits is not None and self.limits.tpm is not None else None
        with self._lock:
            queued = self._replies[0] if self._replies else None
            cost = queued.total_tokens() if queued is not None else ruled[1] if ruled is not None else 0
            refusal, headers = self._limiter.admit(cost, body["model"], at=request.arrived)
            if refusal is None and queued is not None:
                self._replies.popleft()
        reply = refusal or queued or (ruled or self._from_rules(body))[0]
        return replace(reply, headers={**headers, **reply.headers}) if headers else reply

    def _authorize(self, request: ReceivedRequest) -> Reply | None:
        """OpenAI's 401 when an api_key is set and the request does not carry it."""
        if self.api_key is None:
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip() == self.api_key:
            return None
        return faults.invalid_api_key(key.strip())

    def _check(self, request: ReceivedRequest) -> Reply | None:
        """OpenAI's 400 for a body that is not JSON or not a valid request."""
        if request.body is None:
            return error_reply(400, "We could not parse the JSON body of your request. (HINT: "
                               "This likely means you aren't using your HTTP library correctly. "
                               "The OpenAI API expects a JSON payload, but what was sent was not "
                               "valid JSON.)")
        problems = _spec.request_problems(request.body)
        if problems:
            return error_reply(400, problems[0].message, param=problems[0].param)
        return None

    def _from_rules(self, body: dict[str, Any]) -> tuple[Reply, int]:
        """The rules' answer (JSON, or SSE for `stream: true`; checked against the spec if asked) and
        its `usage.total_tokens` (0 for an error)."""
        check = self.validate_responses
        try:
            completion = _rules.complete(body)
            if body.get("stream"):
                chunks = _rules.stream_chunks(body, completion)
                errors = [e for c in chunks for e in _spec.chunk_errors(c)] if check else []
                sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                reply = Reply(body=sse, content_type="text/event-stream; charset=utf-8")
            else:
                errors = _spec.response_errors(completion) if check else []
                reply = Reply(body=completion)
        except _rules.RuleError as exc:
            return error_reply(400, str(exc), param=exc.param), 0
        except Exception as exc:  # noqa: BLE001 - a server must answer; the test sees the 500
            return error_reply(500, f"flowrunner test server: the rules failed: {exc!r}",
                               kind="server_error"), 0
        if errors:
            message = (f"flowrunner test server: rule {_rules.rule_name(body)!r} produced a response "
                       f"that does not match OpenAI's schema: {'; '.join(errors)}")
            return error_reply(500, message, kind="server_error"), 0
        return reply, Reply(body=completion).total_tokens()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not keep the process alive
    # The listen backlog. socketserver's 5 drops connections when hundreds arrive at once (an
    # asyncio.gather over the SDK): the clients see a closed connection, a fault no real API shows.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 chat: ChatServer) -> None:
        super().__init__(address, handler)
        self.chat = chat
        self.stopping = threading.Event()  # set by `ChatServer.stop`: delays and hangs end at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer are normal in tests; anything else is still reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK
    # (about 40 ms per request on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _HTTPServer
    arrived: float | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Silent: tests read `server.requests` instead of a request log."""

    def parse_request(self) -> bool:
        """The request line is in: note when, since that is when a rate limit counts the request (as
        an API's gateway would), not after the body is read and checked, which takes longer on a
        busy machine and would let the server see requests closer together than they arrived."""
        self.arrived = time.monotonic()
        return super().parse_request()

    def _handle(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("content-length") or 0)
        too_long = self._too_long(length)
        raw = b"" if too_long else self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw and not headers.get("content-type", "").startswith("multipart/") else None
        except ValueError:
            body = None
        path, _, query = self.path.partition("?")
        request = ReceivedRequest(self.command, path, headers, body, raw, self.arrived, query)
        if too_long is not None:
            self.server.chat._record(request)  # recorded as every request is, its body unread
        reply = too_long or self.server.chat.answer(request)
        if reply.delay and self.server.stopping.wait(reply.delay):
            reply = replace(reply, fault="drop")  # the server stops: no answer after all
        if reply.fault in ("drop", "hang", "reset"):
            self._break(reply.fault)
            return
        payload, content_type = reply.payload()
        trickle = reply.fault == "trickle" and self.command != "HEAD"
        paced = (bool(reply.chunk_delay) or trickle) and self.command != "HEAD"
        self.send_response_only(reply.status)  # not send_response: a Reply may bring its own date
        self.send_header("content-type", content_type)
        if paced:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(len(payload)))
        sent = {k.lower() for k in reply.headers}
        if "x-request-id" not in sent:  # deterministic, so recorded cassettes do not churn
            self.send_header("x-request-id", "req_" + hashlib.sha256(raw).hexdigest()[:32])
        if "date" not in sent:
            self.send_header("date", self.date_time_string())
        if "openai-processing-ms" not in sent:
            elapsed = int((time.perf_counter() - started) * 1000)
            self.send_header("openai-processing-ms", str(elapsed))
        for name, value in reply.headers.items():
            if name.lower() not in _COMPUTED_HEADERS:
                self.send_header(name, value)
        self.end_headers()
        if trickle:
            self._trickle(content_type, reply.chunk_delay or 1.0)
        elif paced:
            self._pace(payload, reply.chunk_delay or 0.0, cut=reply.fault == "truncate")
        elif reply.fault == "truncate":
            self.wfile.write(payload[:len(payload) // 2])
            self.close_connection = True  # closing is what tells the client the rest is missing
        elif self.command != "HEAD":
            self.wfile.write(payload)

    def _too_long(self, length: int) -> Reply | None:
        """A file upload longer than the Batch API takes is refused unread (its body read and
        dropped in pieces, so memory stays bounded and the client still gets the answer)."""
        if not (self.command == "POST" and self.path.startswith("/v1/files")):
            return None
        if length <= self.server.chat.batches.body_limit():
            return None
        headers = {k.lower(): v for k, v in self.headers.items()}
        unauthorized = self.server.chat._authorize(ReceivedRequest("POST", self.path, headers, None, b""))
        left = length
        while left > 0:
            piece = self.rfile.read(min(left, 1 << 16))
            if not piece:
                break
            left -= len(piece)
        from flowrunner.testing._files import too_large

        return unauthorized or too_large(length, self.server.chat.batches.settings.max_bytes)

    def _pace(self, payload: bytes, delay: float, cut: bool) -> None:
        """Each event as its own HTTP chunk, `delay` seconds apart (the first at once). `cut` (the
        truncate fault) sends the first half of the body only and closes without the last chunk;
        so does the server stopping mid-stream."""
        for number, event in enumerate(sse_events(payload[:len(payload) // 2] if cut else payload)):
            if number and self.server.stopping.wait(delay):
                cut = True
                break
            # One write per chunk: wfile is unbuffered and Nagle is off, so each leaves at once.
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        if cut:
            self.close_connection = True  # closing is what tells the client the rest is missing
        else:
            self.wfile.write(b"0\r\n\r\n")

    def _trickle(self, content_type: str, every: float) -> None:
        """A keep-alive every `every` seconds, each its own HTTP chunk, until the server stops (the
        trickle fault): an SSE comment line for a stream, else a space (JSON allows it before a value)."""
        piece = b": keep-alive\n\n" if content_type.startswith("text/event-stream") else b" "
        self.close_connection = True  # the body never ends: the connection is not reused
        while not self.server.stopping.wait(every):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))

    def _break(self, fault: str) -> None:
        """End the exchange without a response: at once (drop), after the server stops (hang),
        or with a TCP RST (reset) rather than the orderly FIN the other two end with."""
        self.close_connection = True
        if fault == "hang":
            self.server.stopping.wait()
        elif fault == "reset":
            # Linger on with a 0 s timeout: close() discards the connection and sends RST. The
            # socket must close here: the server would otherwise shut it down (FIN) first.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m flowrunner.testing.server",
                                     description="OpenAI-compatible rule-based test server.")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY'")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="delay every chat answer by this long (e.g. 0.1)")
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="SECONDS",
                        help="pace streamed answers: wait this long between their events (e.g. "
                        "0.05), as a model generating its answer would")
    parser.add_argument("--rpm", type=int, help="requests per minute to allow (429 beyond)")
    parser.add_argument("--tpm", type=int, help="tokens per minute to allow (429 beyond)")
    parser.add_argument("--rpd", type=int, help="requests per day to allow (429 beyond)")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="the sliding window the per-minute limits are enforced over, as a "
                        "share of them: 60 RPM with --window 1 is 1 request a second (default 60)")
    parser.add_argument("--headers", choices=HEADER_MODES, default=None,
                        help="what the x-ratelimit-* headers speak of: 'window' (default), what the "
                        "enforcement window has left and when it is empty; 'minute', as OpenAI's do: "
                        "the per-minute limit, what the last 60 s left of it and when it is whole "
                        "again, while the limits are still enforced over --window (--rpm 1200 "
                        "--window 1 --headers minute: 20 in any second, headers counting down from 1200)")
    from flowrunner.testing import _batches

    _batches.add_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    try:
        limits = None
        if (args.rpm, args.tpm, args.rpd) != (None, None, None):
            limits = Limits(rpm=args.rpm, tpm=args.tpm, rpd=args.rpd,
                            window=60.0 if args.window is None else args.window,
                            headers=args.headers or "window")
        elif args.window is not None or args.headers is not None:
            parser.error("--window and --headers need a limit to apply to: --rpm, --tpm or --rpd")
        server = ChatServer(port=args.port, host=args.host, api_key=args.api_key, limits=limits,
                            latency=args.latency, chunk_delay=args.chunk_delay,
                            batch=_batches.settings_from(args))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        server.start()
    except OSError as exc:  # the port is taken, the host unknown...
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        print(f"flowrunner test server: {server.base_url} (Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
