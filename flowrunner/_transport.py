"""The one network seam: send a chat-completion request body, get a parsed completion back.

The engine only knows `Transport.complete(request) -> Completion`. `OpenAITransport` imports the
official SDK when the first request is made (importing it costs most of a second) and translates
its exceptions into flowrunner's in this one place. `FunctionTransport` serves unit tests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ._exceptions import APIConnectionError, APIError, CassetteMissError, ResponseError
from ._stream import StreamFormatError, accumulate, iter_events


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


class Transport(Protocol):
    """Anything that can answer a chat-completion request body."""

    def complete(self, request: dict[str, Any]) -> Completion: ...


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
    calls = tuple(_tool_call(c) for c in raw.get("tool_calls") or [])
    legacy = _function_call(raw.get("function_call")) if raw.get("function_call") else None
    # Send back exactly what the protocol needs: the calls unchanged, none of the response-only extras.
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    if legacy:
        message["function_call"] = {"name": legacy.name, "arguments": legacy.arguments}
    if raw.get("refusal"):
        message["refusal"] = raw["refusal"]
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return Completion(message=message, content=content, finish_reason=choice.get("finish_reason"),
                      tool_calls=calls, function_call=legacy, id=body.get("id"), model=body.get("model"),
                      usage=usage, headers=dict(headers or {}))


def _tool_call(raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise ResponseError(f"a tool call has no function: {str(raw)[:200]!r}")
    fn = raw["function"]
    if not isinstance(fn.get("name"), str):
        raise ResponseError("a tool call has no function name")
    args = fn.get("arguments")
    return ToolCall(id=raw.get("id"), name=fn["name"], arguments=args if isinstance(args, str) else json.dumps(args))


def _function_call(raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ResponseError(f"a function_call has no name: {str(raw)[:200]!r}")
    args = raw.get("arguments")
    return ToolCall(id=None, name=raw["name"], arguments=args if isinstance(args, str) else json.dumps(args))


class FunctionTransport:
    """A transport that asks a Python function: `handler(request) -> completion dict`. For tests."""

    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any]]):
        self.handler = handler
        self.requests: list[dict[str, Any]] = []

    def complete(self, request: dict[str, Any]) -> Completion:
        self.requests.append(json.loads(json.dumps(request)))
        return parse_completion(self.handler(request))


class OpenAITransport:
    """Requests through the official `openai` SDK, to OpenAI or any compatible server."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 600.0):
        self.base_url = base_url
        self._api_key = api_key
        self.timeout = timeout
        self._client: Any = None
        self._client_lock = threading.Lock()  # batch workers share one transport: build one client

    def _sdk(self) -> Any:
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is not None:
                return self._client
            import openai

            # max_retries=0: retrying is the engine's business; two layers would multiply attempts.
            # A local server or a cassette replay needs no key, but the SDK insists on one.
            self._client = openai.OpenAI(api_key=self._api_key or "no-key", base_url=self.base_url,
                                         timeout=self.timeout, max_retries=0)
        return self._client

    def complete(self, request: dict[str, Any]) -> Completion:
        import openai

        body = dict(request)
        kwargs: dict[str, Any] = {"model": body.pop("model"), "messages": body.pop("messages")}
        if "stream" in body:
            kwargs["stream"] = body.pop("stream")
        if body:
            # Everything else goes into the body as it is: no SDK version drops an option it doesn't know.
            kwargs["extra_body"] = body
        try:
            with self._sdk().chat.completions.with_streaming_response.create(**kwargs) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                if kwargs.get("stream"):
                    data = accumulate(iter_events(response.iter_lines()))
                else:
                    text = response.text()
                    try:
                        data = json.loads(text)
                    except json.JSONDecodeError:
                        raise ResponseError(f"the server's answer is not JSON: {text[:200]!r}") from None
        except openai.APIStatusError as exc:
            raise status_error(exc.status_code, exc.body, exc.response.headers.get("x-request-id"),
                               exc.message) from None
        except openai.APITimeoutError:
            raise APIConnectionError(f"the request timed out after {self.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise connection_error(exc, self.base_url) from None
        except StreamFormatError as exc:
            raise ResponseError(str(exc)) from None
        except Exception as exc:
            # vcrpy's "not in cassette" may reach us unwrapped, depending on the SDK's HTTP layer.
            miss = cassette_miss(exc)
            if miss is None:
                raise
            raise miss from None
        return parse_completion(data, headers)


def status_error(status: int, body: Any, request_id: str | None, fallback: str) -> APIError:
    """An APIError from OpenAI's error body (`{message, type, param, code}`), with a hint for the usual ones."""
    err = body if isinstance(body, dict) else {}
    message = err.get("message") if isinstance(err.get("message"), str) else fallback
    code = err.get("code") if isinstance(err.get("code"), str) else None
    text = f"HTTP {status}{f' {code}' if code else ''}: {message}"
    if status == 401:
        text += ("\n  hint: set OPENAI_API_KEY to a valid key, or point --base-url (OPENAI_BASE_URL) at a "
                 "server that needs none")
    elif status == 404:
        text += "\n  hint: check the model name and that the base URL ends in /v1"
    return APIError(text, status=status, type=err.get("type"), code=code, request_id=request_id)


def cassette_miss(exc: BaseException) -> CassetteMissError | None:
    """vcrpy refusing a request it has not recorded, found in the exception chain without importing vcr."""
    cause: BaseException | None = exc
    while cause is not None:
        if type(cause).__name__ == "CannotOverwriteExistingCassetteException":
            from ._cassette import describe_miss

            return CassetteMissError(describe_miss(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def connection_error(exc: BaseException, base_url: str | None) -> APIConnectionError | CassetteMissError:
    """A connection failure, unless it is a cassette refusing a request it has not recorded."""
    miss = cassette_miss(exc)
    if miss is not None:
        return miss
    where = base_url or "https://api.openai.com/v1"
    reason = f" ({exc.__cause__})" if exc.__cause__ else ""
    return APIConnectionError(f"could not connect to {where}{reason}")
