"""An OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and offline demos.

    with ChatServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")

`POST /v1/chat/completions` answers in this order:
1. with `api_key` set, a missing or wrong `Authorization: Bearer ...` gets OpenAI's 401;
2. a body that is not JSON, or does not validate against OpenAI's `CreateChatCompletionRequest`
   (or has a top-level parameter the spec does not know), gets OpenAI's 400 error shape; this
   happens even when replies are queued, and the queued reply stays queued: a real server would
   reject that request too;
3. the oldest `Reply` queued with `enqueue`, served exactly as given (not validated);
4. otherwise the deterministic rules of `flowrunner.testing._rules` (their docstring says what
   they answer). With `validate_responses`, the server checks its own answer against the spec
   and sends a 500 naming the rule if it is invalid, so a broken rule fails the tests loudly.
Every request is recorded in `server.requests` first, whatever the answer. `GET /v1/models` lists
the one model; other paths get 404, other methods on the endpoint 405.

Streams are sent whole, with a Content-Length, so keep-alive works as for any other answer.

Run `python -m flowrunner.testing.server --port 8765` to serve until Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flowrunner.testing import _rules, _spec

MODEL_ID = "flowrunner-rules"
JSON = "application/json"
ERROR_JSON = "application/json; charset=utf-8"  # what OpenAI sends with its error bodies
# Written by the server itself (the content type via `Reply.payload`), never copied from a Reply.
_COMPUTED_HEADERS = {"content-length", "transfer-encoding", "connection", "content-type"}


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a dict body is sent as JSON, a str or bytes body as it is (SSE, HTML)."""

    status: int = 200
    body: dict[str, Any] | list[Any] | str | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @classmethod
    def from_recorded(cls, path: str | Path) -> Reply:
        """A reply from a recorded real response (`tests/data/real-responses/*.json`)."""
        recorded = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(status=recorded["status"], body=recorded["body"], headers=recorded["headers"])

    def payload(self) -> tuple[bytes, str]:
        """The body as bytes and its content type (explicit, else from `headers`, else guessed)."""
        given = self.content_type or {k.lower(): v for k, v in self.headers.items()}.get(
            "content-type")
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), given or JSON
        if isinstance(self.body, str):
            return self.body.encode(), given or "text/plain; charset=utf-8"
        return self.body, given or "application/octet-stream"


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it; `headers` has lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None if there was no body or it was not JSON
    raw: bytes


def error_reply(status: int, message: str, kind: str = "invalid_request_error",
                param: str | None = None, code: str | None = None, **headers: str) -> Reply:
    """An error in OpenAI's shape, with the content type OpenAI sends it with."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status, body, headers, content_type=ERROR_JSON)


def _masked(key: str) -> str:
    """A key as OpenAI echoes it: `<not-a-real-key>` -> `<not-a-r****key>`."""
    return key[:8] + "****" + key[-4:] if len(key) > 12 else "****"


class ChatServer:
    """The test server; a context manager that starts it on entry and stops it on exit."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", api_key: str | None = None,
                 validate_responses: bool = True) -> None:
        self.host, self.port = host, port
        self.api_key = api_key
        self.validate_responses = validate_responses
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._replies: deque[Reply] = deque()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The `base_url` for the SDK: `http://127.0.0.1:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

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
        """Stop serving and release the port; requests in flight finish on their own threads."""
        if self._httpd is None:
            return
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

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def answer(self, request: ReceivedRequest) -> Reply:
        """The reply to one request (the decision order is in the module docstring)."""
        self._record(request)
        if request.path.rstrip("/") == "/v1/models" and request.method == "GET":
            return self._authorize(request) or Reply(body={"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "flowrunner"}]})
        if request.path.rstrip("/") != "/v1/chat/completions":
            return error_reply(404, f"Invalid URL ({request.method} {request.path})")
        if request.method != "POST":
            return error_reply(405, f"Method {request.method} is not allowed on {request.path}; "
                               "use POST.", allow="POST")
        return self._authorize(request) or self._check(request) or self._next_reply() \
            or self._from_rules(request.body)

    def _authorize(self, request: ReceivedRequest) -> Reply | None:
        """OpenAI's 401 when an api_key is set and the request does not carry it."""
        if self.api_key is None:
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip() == self.api_key:
            return None
        if not key.strip():
            message = ("You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            message = (f"Incorrect API key provided: {_masked(key.strip())}. You can find your API "
                       "key at https://platform.openai.com/account/api-keys.")
        return error_reply(401, message, code="invalid_api_key")

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

    def _from_rules(self, body: dict[str, Any]) -> Reply:
        """The rules' answer: JSON, or SSE for `stream: true`; checked against the spec if asked."""
        check = self.validate_responses
        try:
            if body.get("stream"):
                chunks = _rules.stream_chunks(body)
                errors = [e for c in chunks for e in _spec.chunk_errors(c)] if check else []
                sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                reply = Reply(body=sse, content_type="text/event-stream; charset=utf-8")
            else:
                completion = _rules.complete(body)
                errors = _spec.response_errors(completion) if check else []
                reply = Reply(body=completion)
        except _rules.RuleError as exc:
            return error_reply(400, str(exc), param=exc.param)
        except Exception as exc:  # noqa: BLE001 - a server must answer; the test sees the 500
            return error_reply(500, f"flowrunner test server: the rules failed: {exc!r}",
                               kind="server_error")
        if errors:
            message = (f"flowrunner test server: rule {_rules.rule_name(body)!r} produced a response "
                       f"that does not match OpenAI's schema: {'; '.join(errors)}")
            return error_reply(500, message, kind="server_error")
        return reply


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not keep the process alive

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 chat: ChatServer) -> None:
        super().__init__(address, handler)
        self.chat = chat

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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Silent: tests read `server.requests` instead of a request log."""

    def _handle(self) -> None:
        started = time.perf_counter()
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = ReceivedRequest(self.command, self.path.split("?", 1)[0], headers, body, raw)
        reply = self.server.chat.answer(request)
        payload, content_type = reply.payload()
        self.send_response_only(reply.status)  # not send_response: a Reply may bring its own date
        self.send_header("content-type", content_type)
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
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m flowrunner.testing.server",
                                     description="OpenAI-compatible rule-based test server.")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY'")
    args = parser.parse_args(argv)
    server = ChatServer(port=args.port, host=args.host, api_key=args.api_key)
    try:
        with server:
            print(f"flowrunner test server: {server.base_url} (Ctrl-C to stop)", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
