"""Canned failures for the test server: OpenAI's errors as OpenAI words them, and broken connections.

    from flowrunner.testing import ChatServer, faults

    server.enqueue(faults.rate_limited(retry_after_ms=20), faults.dropped(), faults.completion("hi"))

Each function returns a `Reply` to queue with `ChatServer.enqueue`. Error bodies have OpenAI's
shape `{"error": {"message", "type", "param", "code"}}` and content type
`application/json; charset=utf-8`; the wording follows OpenAI's (the 401 is checked against a
recorded one in `tests/data/real-responses/`; no genuine 429 recording is public, so the 429
wording follows the messages OpenAI documents and users quote). The server adds `x-request-id`,
`date` and `openai-processing-ms` to every reply.
"""

from __future__ import annotations

import math
from dataclasses import replace

from flowrunner.testing._reply import Reply, error_reply

MODEL = "gpt-4o-mini"
ORGANIZATION = "org-flowrunnertest0000000000"  # the shape of a real one; no real organization
RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"
DEFAULT_LIMITS = {"requests": 3, "tokens": 10000}  # the free tier's RPM, a GPT-4 account's TPM
PER = {"min": ("per min", "M"), "day": ("per day", "D")}


def go_duration(seconds: float) -> str:
    """A duration as Go prints it and OpenAI's reset headers use: `0s`, `20ms`, `1.5s`, `6m0s`.

    Rounded up to the millisecond, so a client that waits that long is never early.
    """
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {seconds!r}")
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, fraction = divmod(ms, 1000)
    text = f"{whole}" + (f".{fraction:03d}".rstrip("0") if fraction else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _seconds_text(value: float | str) -> str:
    """A `retry-after` value as sent: whole seconds without a point, else as given."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def rate_limited(kind: str = "requests", retry_after_ms: int | None = None,
                 retry_after: float | str | None = None, reset: float | str | None = None, *,
                 limit: int | None = None, used: int | None = None, requested: int | None = None,
                 per: str = "min", model: str = MODEL, organization: str = ORGANIZATION) -> Reply:
    """OpenAI's 429 `rate_limit_exceeded` for `kind` "requests" (RPM, or RPD with `per="day"`)
    or "tokens" (TPM); a client should wait and retry.

    `retry_after_ms` and `retry_after` (seconds, or an HTTP date as a string) become the headers
    of those names when given; `reset` (seconds, or a Go duration string) adds the three
    `x-ratelimit-*-{kind}` headers. The message's "try again in" uses the first of these given.
    """
    if kind not in DEFAULT_LIMITS:
        raise ValueError(f"kind must be 'requests' or 'tokens', got {kind!r}")
    if per not in PER or (per == "day" and kind != "requests"):
        raise ValueError(f"per must be 'min' (or 'day' for requests), got {per!r}")
    limit = DEFAULT_LIMITS[kind] if limit is None else limit
    requested = (1 if kind == "requests" else 500) if requested is None else requested
    used = (limit if kind == "requests" else max(0, limit - requested // 2)) if used is None else used
    headers: dict[str, str] = {}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    if retry_after is not None:
        headers["retry-after"] = _seconds_text(retry_after)
    if reset is not None:
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
        headers[f"x-ratelimit-reset-{kind}"] = reset if isinstance(reset, str) else go_duration(reset)
    if retry_after_ms is not None:
        wait = go_duration(retry_after_ms / 1000)
    elif isinstance(retry_after, (int, float)):
        wait = go_duration(retry_after)
    elif reset is not None:
        wait = reset if isinstance(reset, str) else go_duration(reset)
    else:
        wait = "20s"
    words, letter = PER[per]
    message = (f"Rate limit reached for {model} in organization {organization} on {kind} {words} "
               f"({kind[0].upper()}P{letter}): Limit {limit}, Used {used}, Requested {requested}. "
               f"Please try again in {wait}. Visit {RATE_LIMITS_URL} to learn more.")
    return error_reply(429, message, kind, code="rate_limit_exceeded", **headers)


def request_too_large(limit: int = 10000, requested: int = 12000, *, model: str = MODEL,
                      organization: str = ORGANIZATION) -> Reply:
    """OpenAI's 429 for one request over the whole TPM limit: it can never pass, do not retry."""
    message = (f"Request too large for {model} in organization {organization} on tokens per min "
               f"(TPM): Limit {limit}, Requested {requested}. The input or output tokens must be "
               f"reduced in order to run successfully. Visit {RATE_LIMITS_URL} to learn more.")
    return error_reply(429, message, "tokens", code="rate_limit_exceeded")


def insufficient_quota() -> Reply:
    """OpenAI's 429 for an account out of credit: a billing problem, waiting does not help."""
    message = ("You exceeded your current quota, please check your plan and billing details. For "
               "more information on this error, read the docs: "
               "https://platform.openai.com/docs/guides/error-codes/api-errors.")
    return error_reply(429, message, "insufficient_quota", code="insufficient_quota")


def server_error() -> Reply:
    """OpenAI's 500: a fault on its side, worth a retry."""
    return error_reply(500, "The server had an error while processing your request. Sorry about "
                       "that!", kind="server_error")


def overloaded(code: str | None = None) -> Reply:
    """OpenAI's 503 "engine overloaded"; `code` is null in most, `server_is_overloaded` in some."""
    return error_reply(503, "The engine is currently overloaded, please try again later",
                       kind="server_error", code=code)


def bad_gateway_html() -> Reply:
    """A 502 as the proxy in front of the API sends it: an HTML page, not JSON."""
    page = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
            "</body>\r\n</html>\r\n")
    return Reply(502, page, {"server": "cloudflare"}, "text/html")


def invalid_api_key(key: str = "sk-not-a-real-key-0000") -> Reply:
    """OpenAI's 401 for a wrong key (echoed masked, as OpenAI does), or for none if `key` is ""."""
    if not key:
        message = ("You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    else:
        masked = key[:8] + "****" + key[-4:] if len(key) > 12 else "****"
        message = (f"Incorrect API key provided: {masked}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.")
    return error_reply(401, message, code="invalid_api_key")


def model_not_found(model: str = "gpt-nonexistent") -> Reply:
    """OpenAI's 404 for a model the key cannot use."""
    return error_reply(404, f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found")


def context_length_exceeded(limit: int = 128000, requested: int = 130000) -> Reply:
    """OpenAI's 400 for messages over the model's context window: retrying cannot help."""
    message = (f"This model's maximum context length is {limit} tokens. However, your messages "
               f"resulted in {requested} tokens. Please reduce the length of the messages.")
    return error_reply(400, message, param="messages", code="context_length_exceeded")


def completion(text: str = "Hello! How can I help you today?", model: str = MODEL) -> Reply:
    """A valid 200 chat completion with `text` (tokens: words), e.g. to delay or truncate."""
    words = max(1, len(text.split()))
    body = {"id": "chatcmpl-flowrunnerfaults0000000000", "object": "chat.completion",
            "created": 1700000000, "model": model, "system_fingerprint": "fp_flowrunner",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1}}
    return Reply(body=body)


def delayed(reply: Reply, seconds: float) -> Reply:
    """`reply`, sent after `seconds`."""
    return replace(reply, delay=seconds)


def dropped() -> Reply:
    """The connection closes without a response (the SDK: APIConnectionError)."""
    return Reply(fault="drop")


def connection_reset() -> Reply:
    """The connection is aborted with a TCP RST (the client: connection reset by peer)."""
    return Reply(fault="reset")


def truncated(reply: Reply | None = None) -> Reply:
    """`reply` (a completion by default) cut off half-way through its body."""
    return replace(reply or completion(), fault="truncate")


def trickled(reply: Reply | None = None, every: float = 1.0) -> Reply:
    """`reply`'s status and headers (a completion's by default), then a keep-alive every `every` seconds
    and never the body, until the server stops: only a deadline on the whole request ends it."""
    if not (math.isfinite(every) and every > 0):
        raise ValueError(f"every must be a number of seconds > 0, got {every!r}")
    return replace(reply or completion(), fault="trickle", chunk_delay=every)


def timeout_reply() -> Reply:
    """No response until the server stops: the client's own timeout must fire."""
    return Reply(fault="hang")

