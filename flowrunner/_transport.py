"""The one network seam: send a chat-completion request body, get a parsed completion back.

The engine only knows `Transport.complete(request) -> Completion`. `OpenAITransport` imports the
official SDK when the first request is made (importing it costs most of a second) and translates
its exceptions into flowrunner's in this one place. `FunctionTransport` serves unit tests.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from ._chain import exception_chain
from ._exceptions import (BILLING_CODES, APIConnectionError, APIError, APITimeoutError, CassetteMissError,
                          ResponseError)
from ._deadline import Deadline, deadline_for
from ._json import JSONError, loads, sendable
from ._secrets import redact_url, register, register_url
from ._stream import StreamFormatError, accumulate, iter_events, iter_lines
from ._urls import check_base_url


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; `arguments` is the raw JSON string, unparsed and unchecked."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """The parts of a chat completion the engine acts on, plus the assistant message to send back."""

    message: dict[str, Any]
    content: str | None
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    function_call: ToolCall | None = None
    id: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None
    """The model's refusal (`message.refusal`), when it refused instead of answering."""
    audio: dict[str, Any] | None = None
    """A spoken answer (`message.audio`: id, expires_at, transcript, base64 data); content is then null."""


ChunkHandler = Callable[[dict[str, Any]], None]
"""Called with each `chat.completion.chunk` of a streamed answer as it arrives."""


class Transport(Protocol):
    """Anything that can answer a chat-completion request body."""

    def complete(self, request: dict[str, Any], on_chunk: ChunkHandler | None = None,
                 on_sent: Callable[[], None] | None = None) -> Completion:
        """The answer to `request`; `on_chunk` sees a stream's chunks, `on_sent` is called as the request leaves."""
        ...


def parse_completion(body: Any, headers: dict[str, str] | None = None) -> Completion:
    """Check the shape the engine relies on; anything else is a ResponseError, not a KeyError."""
    if not isinstance(body, dict):
        raise ResponseError(f"the server's answer is not a JSON object: {str(body)[:200]!r}")
    if isinstance(body.get("error"), dict):
        err = body["error"]
        raise APIError(f"the server answered with an error: {err.get('message')}", status=200,
                       type=err.get("type"), code=err.get("code"))
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ResponseError("the server's answer has no choices; is the base URL an OpenAI-compatible "
                            "/v1 endpoint?")
    choice = choices[0]
    raw = choice.get("message")
    if not isinstance(raw, dict):
        raise ResponseError("the server's answer has a choice without a message")
    content = raw.get("content")
    if content is not None and not isinstance(content, str):
        raise ResponseError(f"message.content should be a string, got {type(content).__name__}")
    raw_calls = raw.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ResponseError(f"message.tool_calls should be a list, got {type(raw_calls).__name__}")
    calls = tuple(_tool_call(c) for c in raw_calls)
    legacy = _function_call(raw.get("function_call")) if raw.get("function_call") else None
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise ResponseError(f"finish_reason should be a string, got {type(finish_reason).__name__}")
    refusal = raw.get("refusal")
    if refusal is not None and not isinstance(refusal, str):
        raise ResponseError(f"message.refusal should be a string, got {type(refusal).__name__}")
    audio = raw.get("audio")
    if audio is not None and not (isinstance(audio, dict) and isinstance(audio.get("transcript") or "", str)):
        raise ResponseError(f"message.audio should be an object with a text transcript: {str(audio)[:200]!r}")
    # Send back exactly what the protocol needs: the calls unchanged, none of the response-only extras.
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    if legacy:
        message["function_call"] = {"name": legacy.name, "arguments": legacy.arguments}
    if refusal:
        message["refusal"] = refusal
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return Completion(message=message, content=content, finish_reason=finish_reason,
                      tool_calls=calls, function_call=legacy, id=_text_or_none(body.get("id")),
                      model=_text_or_none(body.get("model")), usage=usage, headers=dict(headers or {}),
                      refusal=refusal or None, audio=audio)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tool_call(raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise ResponseError(f"a tool call has no function: {str(raw)[:200]!r}")
    fn = raw["function"]
    if not isinstance(fn.get("name"), str):
        raise ResponseError("a tool call has no function name")
    args = fn.get("arguments")
    return ToolCall(id=_text_or_none(raw.get("id")), name=fn["name"],
                    arguments=args if isinstance(args, str) else json.dumps(args))


def _function_call(raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ResponseError(f"a function_call has no name: {str(raw)[:200]!r}")
    args = raw.get("arguments")
    return ToolCall(id=None, name=raw["name"], arguments=args if isinstance(args, str) else json.dumps(args))


class FunctionTransport:
    """A transport that asks a Python function: `handler(request) -> completion dict`. For tests."""

    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]]]):
        self.handler = handler
        self.requests: list[dict[str, Any]] = []

    def complete(self, request: dict[str, Any], on_chunk: ChunkHandler | None = None,
                 on_sent: Callable[[], None] | None = None) -> Completion:
        """The handler's answer; a list of chunk dicts is a stream, passed to `on_chunk` and folded."""
        self.requests.append(json.loads(json.dumps(request)))
        if on_sent is not None:
            on_sent()
        answer: Any = self.handler(request)
        if isinstance(answer, list):
            try:
                return parse_completion(accumulate(answer, on_chunk))
            except StreamFormatError as exc:
                raise ResponseError(str(exc)) from None
        return parse_completion(answer)


class OpenAITransport:
    """Requests through the official `openai` SDK, to OpenAI or any compatible server."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 600.0,
                 deadline: float | None = None):
        """`api_key` defaults to $OPENAI_API_KEY, as the SDK's does; `base_url` to OpenAI's. `timeout` bounds
        each wait for the server, `deadline` each request as a whole (None: `_deadline`'s defaults)."""
        check_base_url(base_url)  # `127.0.0.1:8000/v1` would be retried as a network error
        self.base_url = base_url
        self._api_key = api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        register(api_key, "OPENAI_API_KEY")  # never in a record, an error or a cassette
        register_url(base_url)  # nor a password or key in the base URL
        self.timeout = timeout
        self.deadline = deadline
        self._client: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()  # the request in progress on this thread: its on_sent

    @property
    def scope(self) -> str:
        """Which server's rate limits apply: requests to the same base URL share one limiter (its credentials
        redacted: they may be shown, and the same server is the same budget, as with two keys)."""
        return redact_url(self.base_url or "https://api.openai.com/v1").rstrip("/")

    def _sent(self, request: Any) -> None:
        """The HTTP client's request hook. It runs before a connection is taken from the pool (or made),
        under load tens of milliseconds before the request is on the wire, and a rate limiter pacing
        from then would see requests leave closer together than the server does. So the request's
        `on_sent` waits for httpcore's `trace` extension to report the request written whole: then
        any delay before the write moves the next request's turn later by as much (see `_ratelimit`)."""
        callback = getattr(self._local, "on_sent", None)
        if callback is None:
            return
        self._local.on_sent = None

        def trace(event: str, _info: Any) -> None:
            if event.endswith(".send_request_body.complete"):  # http11. or http2.
                callback()

        request.extensions["trace"] = trace

    def warm(self) -> None:
        """Make the SDK client now (importing the SDK takes most of a second), so that the first request
        leaves when the rate limiter lets it, not a second later with the next ones close behind."""
        self._sdk().chat.completions  # noqa: B018 - the SDK imports its chat resources on first use (~30 ms)

    def close(self) -> None:
        """Close the SDK client's pooled connections (a new client is made if used again)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> OpenAITransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sdk(self) -> Any:
        with self._lock:  # batch workers make their first request at the same time
            if self._client is None:
                import openai

                # max_retries=0: retrying is the engine's business; two layers would multiply attempts.
                # A local server or a cassette replay needs no key, but the SDK insists on one.
                # The request hook tells the rate limiter when a request really leaves (after the SDK's
                # own preparation), which is what its pacing counts from.
                http = _http_client(openai.DefaultHttpxClient, self._sent)
                self._client = openai.OpenAI(api_key=self._api_key or "no-key", base_url=self.base_url,
                                             timeout=self.timeout, max_retries=0, http_client=http)
            return self._client

    def complete(self, request: dict[str, Any], on_chunk: ChunkHandler | None = None,
                 on_sent: Callable[[], None] | None = None) -> Completion:
        import openai

        self._local.on_sent = on_sent
        body = dict(sendable(request))  # a lone surrogate (argv, a model's answer) as U+FFFD
        kwargs: dict[str, Any] = {"model": body.pop("model"), "messages": body.pop("messages")}
        if "stream" in body:
            kwargs["stream"] = body.pop("stream")
        if body:
            # Everything else goes into the body as it is: no SDK version drops an option it doesn't know.
            kwargs["extra_body"] = body
        deadline = deadline_for(stream=bool(kwargs.get("stream")), given=self.deadline, timeout=self.timeout)
        # Each wait for the server within the deadline too, and the answer read as it arrives, so the
        # deadline is checked at every piece (see `_deadline`).
        kwargs["timeout"] = min(self.timeout, deadline.seconds)
        try:
            with self._sdk().chat.completions.with_streaming_response.create(**kwargs) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                pieces = deadline.pieces(response.iter_bytes())
                if kwargs.get("stream"):
                    data = accumulate(iter_events(iter_lines(pieces)), on_chunk)
                else:
                    text = b"".join(pieces).decode(response.http_response.encoding or "utf-8", errors="replace")
                    try:
                        data = loads(text)
                    except JSONError as exc:
                        raise ResponseError(f"the server's answer is not JSON ({exc.msg}): {text[:200]!r}") from None
        except openai.APIStatusError as exc:
            raise status_error(exc.status_code, exc.body, exc.response.headers.get("x-request-id"),
                               exc.message, {k.lower(): v for k, v in exc.response.headers.items()},
                               _text(exc.response)) from None
        except openai.APITimeoutError:
            raise self._timed_out(deadline) from None
        except openai.APIConnectionError as exc:
            raise connection_error(exc, self.base_url) from None
        except StreamFormatError as exc:
            raise ResponseError(str(exc)) from None
        except Exception as exc:
            # vcrpy's "not in cassette" may reach us unwrapped, depending on the SDK's HTTP layer, and so
            # may the HTTP library's own errors while a body is read (a connection cut mid-answer).
            miss = cassette_miss(exc)
            if miss is not None:
                raise miss from None
            broken = _http_failure(exc, self.timeout)
            if broken is None:
                raise
            raise (self._timed_out(deadline) if isinstance(broken, APITimeoutError) else broken) from None
        return parse_completion(data, headers)

    def _timed_out(self, deadline: Deadline) -> APITimeoutError:
        """A wait for the server timed out: the deadline's error if that is what it came to, else the timeout's."""
        if deadline.passed():
            return deadline.error()
        return APITimeoutError(f"the request timed out after {self.timeout:g} s (--timeout)")


def _http_client(base: type, on_request: Callable[[Any], None]) -> Any:
    """The SDK's default HTTP client with a request hook, closing itself when dropped (as the SDK's own does:
    a transport nobody closed must not leave sockets open)."""

    class _Client(base):  # type: ignore[misc]
        def __del__(self) -> None:
            # Never raises: the garbage collector may run this anywhere, at interpreter shutdown, or deep in
            # another call's stack (the SDK parsing a hostile, deeply nested error body), where even
            # `is_closed` can hit the recursion limit and print "Exception ignored in ...".
            try:
                if not self.is_closed:
                    self.close()
            except Exception:  # noqa: BLE001
                pass

    return _Client(event_hooks={"request": [on_request]}, verify=_tls_settings(base))


@functools.cache
def _tls_settings(client_class: type) -> Any:
    """The TLS context the SDK's HTTP client builds for itself by default (certificates loaded, ~25 ms, even
    for an http:// server), built once per process and shared by every transport: a context is safe to share
    between clients and threads. `True` (each client builds its own) if the HTTP library is not known."""
    for cls in client_class.__mro__:
        library = sys.modules.get(cls.__module__.partition(".")[0])
        if library is not None and library.__name__.startswith("httpx") and hasattr(library, "create_ssl_context"):
            return library.create_ssl_context()
    return True


def _http_failure(exc: BaseException, timeout: float) -> APIConnectionError | ResponseError | None:
    """An httpx (or httpx2, the SDK's fork) error met while the answer was read, as ours; the class tree tells,
    without importing it. A body that does not decode as its `content-encoding` says is a malformed answer."""
    classes = [(c.__module__.partition(".")[0], c.__name__) for c in type(exc).__mro__]
    if any(module.startswith("httpx") and name == "DecodingError" for module, name in classes):
        return ResponseError(f"the server's answer could not be decoded as its content-encoding says ({exc})")
    if not any(module.startswith("httpx") and name == "TransportError" for module, name in classes):
        return None
    if any(name == "TimeoutException" for _, name in classes):
        return APITimeoutError(f"the request timed out after {timeout:g} s (--timeout)")
    return APIConnectionError(f"the connection broke while the answer was read ({exc})")


def status_error(status: int, body: Any, request_id: str | None, fallback: str,
                 headers: dict[str, str] | None = None, text: str | None = None) -> APIError:
    """An APIError from OpenAI's error body (`{message, type, param, code}`), with a hint for the usual ones."""
    err = body if isinstance(body, dict) else {}
    message = err.get("message") if isinstance(err.get("message"), str) else _plain(text) or fallback
    code = err.get("code") if isinstance(err.get("code"), str) else None
    kind = err.get("type") if isinstance(err.get("type"), str) else None
    line = f"HTTP {status}{f' {code}' if code else ''}: {message}"
    if status == 401:
        line += ("\n  hint: set OPENAI_API_KEY to a valid key, or point --base-url (OPENAI_BASE_URL) at a "
                 "server that needs none")
    elif status == 404:
        line += "\n  hint: check the model name and that the base URL ends in /v1"
    elif status == 429 and (code in BILLING_CODES or kind in BILLING_CODES):
        line += ("\n  hint: the account has no credit left: check your plan and billing details at "
                 "https://platform.openai.com/account/billing (retrying cannot help)")
    return APIError(line, status=status, type=kind, code=code, request_id=request_id, headers=headers)


def _text(response: Any) -> str | None:
    try:
        return str(response.text)
    except Exception:  # noqa: BLE001 - a body that cannot be read is no reason to lose the status
        return None


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


def _plain(text: str | None) -> str | None:
    """A non-JSON error body in a line: an HTML page (a proxy's 502) by its title, else its start."""
    if not text or not text.strip():
        return None
    title = _TITLE.search(text)
    if title:
        return f"{' '.join(title.group(1).split())} (an HTML page, not an API answer: a proxy or gateway in between?)"
    flat = " ".join(_TAGS.sub(" ", text).split())
    return flat[:200] + ("..." if len(flat) > 200 else "")


def cassette_miss(exc: BaseException) -> CassetteMissError | None:
    """vcrpy refusing a request it has not recorded, found in the exception chain without importing vcr."""
    for cause in exception_chain(exc):
        if type(cause).__name__ == "CannotOverwriteExistingCassetteException":
            from ._cassette import describe_miss

            return CassetteMissError(describe_miss(cause))
    return None


def connection_error(exc: BaseException, base_url: str | None) -> APIConnectionError | CassetteMissError:
    """A connection failure, unless it is a cassette refusing a request it has not recorded."""
    miss = cassette_miss(exc)
    if miss is not None:
        return miss
    where = redact_url(base_url or "https://api.openai.com/v1")
    reason = f" ({exc.__cause__})" if exc.__cause__ else ""
    return APIConnectionError(f"no answer from {where}{reason}")
