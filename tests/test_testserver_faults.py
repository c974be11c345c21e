"""The test server's faults, canned OpenAI errors, enforced rate limits and latency, seen over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx2
import openai
import pytest

from flowrunner._chain import exception_chain
from flowrunner.testing import ChatServer, Limits, Reply, faults
from flowrunner.testing import _spec
from flowrunner.testing._limits import Limiter
from flowrunner.testing.server import main as server_main

pytestmark = pytest.mark.server

RATE_LIMITS = "Visit https://platform.openai.com/account/rate-limits to learn more."



def in_background(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """`call` on a started thread, and the list that gets what it raises."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            caught.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, caught


def stop_timed(server: ChatServer) -> float:
    """Seconds `server.stop()` took."""
    started = time.perf_counter()
    server.stop()
    return time.perf_counter() - started

def ask(text: str = "Ping the server") -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def post(server: ChatServer, body: Any = None, timeout: float = 5.0,
         ) -> tuple[int, dict[str, str], bytes]:
    """One raw exchange on a fresh connection: status, lower-cased headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body or ask()),
                     headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def error_of(raw: bytes) -> dict[str, Any]:
    """The inner error, after checking the body against OpenAI's ErrorResponse schema."""
    body = json.loads(raw)
    assert _spec.error_errors(body) == []
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def seconds(duration: str) -> float:
    """A Go duration as OpenAI's reset headers write it (`1h2m3.5s`, `20ms`), in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


@pytest.fixture
def client(chat_server: ChatServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=chat_server.base_url, api_key="test", max_retries=0,
                       timeout=5) as sdk:
        yield sdk


def sdk_ask(client: openai.OpenAI) -> str | None:
    return client.chat.completions.create(**ask()).choices[0].message.content


# -- Reply's new fields -------------------------------------------------------------------------

def test_reply_rejects_unknown_faults_and_bad_delays() -> None:
    with pytest.raises(ValueError, match="unknown fault 'explode'; expected one of: drop, reset, "
                                         "truncate, hang, trickle"):
        Reply(fault="explode")
    for delay in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="delay must be"):
            Reply(delay=delay)
    assert Reply().delay == 0.0 and Reply().fault is None


# -- faults, each as a client sees it -----------------------------------------------------------

def test_drop_closes_without_a_response(chat_server: ChatServer, client: openai.OpenAI) -> None:
    chat_server.enqueue(faults.dropped(), faults.dropped())
    with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
        httpx2.post(chat_server.base_url + "/chat/completions", json=ask(), timeout=5)
    with pytest.raises(openai.APIConnectionError) as caught:
        sdk_ask(client)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert sdk_ask(client) == "You said: Ping the server"  # the queue is used up, in order
    assert len(chat_server.requests) == 3  # recorded, fault or not


def test_reset_aborts_with_rst(chat_server: ChatServer) -> None:
    chat_server.enqueue(faults.connection_reset(), faults.connection_reset())
    with pytest.raises(ConnectionResetError):
        post(chat_server)
    with pytest.raises(httpx2.ReadError) as caught:
        httpx2.post(chat_server.base_url + "/chat/completions", json=ask(), timeout=5)
    causes = list(exception_chain(caught.value))
    assert any(isinstance(c, ConnectionResetError) for c in causes), causes
    assert len(chat_server.requests) == 2


def test_truncate_sends_half_the_announced_body(chat_server: ChatServer,
                                                client: openai.OpenAI) -> None:
    reply = faults.completion("one two three four five six")
    chat_server.enqueue(faults.truncated(reply), faults.truncated(reply), faults.truncated(reply))
    full = len(reply.payload()[0])
    conn = http.client.HTTPConnection("127.0.0.1", chat_server.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(ask()))
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-length") == str(full)
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert len(caught.value.partial) == full // 2
    conn.close()
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete|complete message body"):
        httpx2.post(chat_server.base_url + "/chat/completions", json=ask(), timeout=5)
    with pytest.raises(openai.APIConnectionError):
        sdk_ask(client)


def test_hang_times_the_client_out_and_stop_ends_it_promptly() -> None:
    server = ChatServer().start()
    try:
        server.enqueue(faults.timeout_reply(), faults.timeout_reply())
        with pytest.raises(httpx2.ReadTimeout):
            httpx2.post(server.base_url + "/chat/completions", json=ask(), timeout=0.1)
        # A patient client is still waiting on the second hang when the server stops.
        waiter, outcome = in_background(lambda: post(server, timeout=10))
        deadline = time.monotonic() + 2
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        stopped = stop_timed(server)
    waiter.join(timeout=2)
    assert stopped < 0.5
    assert not waiter.is_alive()  # the handler ended its wait and closed the connection
    assert len(outcome) == 1 and isinstance(outcome[0], http.client.RemoteDisconnected)


@pytest.mark.parametrize("reply, piece", [
    (faults.completion(), b" "),
    (Reply(body="data: [DONE]\n\n", content_type="text/event-stream"), b": keep-alive\n\n"),
])
def test_trickle_keeps_a_read_timeout_from_firing_until_the_server_stops(reply: Reply, piece: bytes) -> None:
    server = ChatServer().start()
    pieces: list[bytes] = []
    try:
        server.enqueue(faults.trickled(reply, every=0.05), faults.trickled(reply, every=0.05))
        with httpx2.stream("POST", server.base_url + "/chat/completions", json=ask(),
                           timeout=0.5) as response:  # ten times the trickle's pace
            assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
            assert response.headers["content-type"] == reply.media_type()
            for chunk in response.iter_raw():
                pieces.append(chunk)
                if len(pieces) == 12:  # 0.6 s: past the read timeout, which never fired
                    break
        # A patient client is still reading when the server stops: the body ends unfinished.
        thread, caught = in_background(lambda: post(server, timeout=10))
        time.sleep(0.2)
    finally:
        stopped = stop_timed(server)
    thread.join(timeout=2)
    assert set(pieces) == {piece}
    assert stopped < 0.5 and not thread.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], http.client.HTTPException), caught


def test_trickled_needs_a_pace() -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="every must be"):
            faults.trickled(every=bad)


def test_delay_holds_the_answer_back(chat_server: ChatServer, client: openai.OpenAI) -> None:
    chat_server.enqueue(faults.delayed(faults.completion("late"), 0.15),
                        Reply(status=503, body="busy", delay=0.1))
    started = time.perf_counter()
    assert sdk_ask(client) == "late"
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    status, headers, raw = post(chat_server)
    assert (status, raw) == (503, b"busy") and time.perf_counter() - started >= 0.1
    assert int(headers["openai-processing-ms"]) >= 100  # the wait is processing time


# -- canned OpenAI errors ------------------------------------------------------------------------

CANNED: list[tuple[Callable[[], Reply], int, str, str | None, type[openai.APIError]]] = [
    (faults.rate_limited, 429, "requests", "rate_limit_exceeded", openai.RateLimitError),
    (lambda: faults.rate_limited("tokens"), 429, "tokens", "rate_limit_exceeded",
     openai.RateLimitError),
    (faults.request_too_large, 429, "tokens", "rate_limit_exceeded", openai.RateLimitError),
    (faults.insufficient_quota, 429, "insufficient_quota", "insufficient_quota",
     openai.RateLimitError),
    (faults.server_error, 500, "server_error", None, openai.InternalServerError),
    (faults.overloaded, 503, "server_error", None, openai.InternalServerError),
    (lambda: faults.overloaded("server_is_overloaded"), 503, "server_error",
     "server_is_overloaded", openai.InternalServerError),
    (faults.invalid_api_key, 401, "invalid_request_error", "invalid_api_key",
     openai.AuthenticationError),
    (faults.model_not_found, 404, "invalid_request_error", "model_not_found",
     openai.NotFoundError),
    (faults.context_length_exceeded, 400, "invalid_request_error", "context_length_exceeded",
     openai.BadRequestError),
]


@pytest.mark.parametrize(("make", "status", "kind", "code", "raised"), CANNED)
def test_canned_errors_have_openais_shape(chat_server: ChatServer, client: openai.OpenAI,
                                          make: Callable[[], Reply], status: int, kind: str,
                                          code: str | None, raised: type[openai.APIError]) -> None:
    chat_server.enqueue(make(), make())
    got, headers, raw = post(chat_server)
    assert got == status
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-request-id"].startswith("req_")
    error = error_of(raw)
    assert (error["type"], error["code"]) == (kind, code)
    with pytest.raises(raised) as caught:
        sdk_ask(client)
    assert caught.value.code == code
    assert caught.value.message.endswith(error["message"])


def test_canned_error_wording() -> None:
    def message(reply: Reply) -> str:
        assert isinstance(reply.body, dict)
        return str(reply.body["error"]["message"])

    assert message(faults.rate_limited(retry_after_ms=20000)) == (
        "Rate limit reached for gpt-4o-mini in organization org-flowrunnertest0000000000 on "
        "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. "
        + RATE_LIMITS)
    assert message(faults.rate_limited("tokens", retry_after=4.968, limit=10000, used=9796,
                                       requested=1032, model="gpt-4")).startswith(
        "Rate limit reached for gpt-4 in organization org-flowrunnertest0000000000 on tokens per "
        "min (TPM): Limit 10000, Used 9796, Requested 1032. Please try again in 4.968s.")
    assert "on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in " \
           "7m12s." in message(faults.rate_limited(limit=200, per="day", reset="7m12s"))
    assert message(faults.request_too_large()) == (
        "Request too large for gpt-4o-mini in organization org-flowrunnertest0000000000 on tokens "
        "per min (TPM): Limit 10000, Requested 12000. The input or output tokens must be reduced "
        "in order to run successfully. " + RATE_LIMITS)
    assert message(faults.insufficient_quota()).startswith(
        "You exceeded your current quota, please check your plan and billing details.")
    assert message(faults.overloaded()) == \
        "The engine is currently overloaded, please try again later"
    with pytest.raises(ValueError, match="kind must be"):
        faults.rate_limited("seconds")
    with pytest.raises(ValueError, match="per must be"):
        faults.rate_limited("tokens", per="day")


def test_rate_limited_headers_are_sent_as_given(chat_server: ChatServer,
                                                client: openai.OpenAI) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    chat_server.enqueue(faults.rate_limited("tokens", retry_after_ms=1500, reset=6.5, limit=100,
                                            used=90, requested=20),
                        faults.rate_limited(retry_after=date), faults.rate_limited(retry_after=2))
    status, headers, _ = post(chat_server)
    assert status == 429
    assert {k: v for k, v in headers.items() if k.startswith(("x-ratelimit", "retry"))} == {
        "retry-after-ms": "1500", "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "6.5s"}
    assert post(chat_server)[1]["retry-after"] == date
    with pytest.raises(openai.RateLimitError) as caught:
        sdk_ask(client)
    assert caught.value.response.headers["retry-after"] == "2"


def test_bad_gateway_is_an_html_page(chat_server: ChatServer, client: openai.OpenAI) -> None:
    chat_server.enqueue(faults.bad_gateway_html(), faults.bad_gateway_html())
    status, headers, raw = post(chat_server)
    assert (status, headers["content-type"], headers["server"]) == (502, "text/html", "cloudflare")
    assert b"<title>502 Bad Gateway</title>" in raw
    with pytest.raises(openai.InternalServerError) as caught:
        sdk_ask(client)
    assert caught.value.status_code == 502 and "502 Bad Gateway" in str(caught.value.body)


@pytest.mark.parametrize(("value", "text"), [
    (0, "0s"), (0.0004, "1ms"), (0.006, "6ms"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"),
    (4.968, "4.968s"), (20, "20s"), (60, "1m0s"), (360, "6m0s"), (432, "7m12s"),
    (3600, "1h0m0s"), (86399.9, "23h59m59.9s")])
def test_go_durations(value: float, text: str) -> None:
    assert faults.go_duration(value) == text
    assert seconds(text) == pytest.approx(value, abs=0.001)


# -- enforced rate limits ------------------------------------------------------------------------

def test_limits_are_checked() -> None:
    assert Limits(rpm=60, window=1).requests_per_window == 1
    assert Limits(rpm=3).requests_per_window == 3
    assert Limits(rpm=100, window=0.6).requests_per_window == 1
    assert Limits(rpm=10, window=1).requests_per_window == 1  # never 0
    assert Limits(tpm=10000, window=1.5).tokens_per_window == 250
    for bad in ({"rpm": 0}, {"tpm": 2.5}, {"rpd": True}, {"window": 0}, {"window": float("inf")}):
        with pytest.raises(ValueError, match="must be"):
            Limits(**bad)
    with pytest.raises(ValueError, match="latency"):
        ChatServer(latency=-1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=120, tpm=600, window=1.0), clock)  # 2 requests, 10 tokens a second
    assert limiter.admit(4, "m") == (None, {
        "x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "600",
        "x-ratelimit-remaining-tokens": "6", "x-ratelimit-reset-tokens": "1s"})
    clock.now += 0.4
    refusal, headers = limiter.admit(7, "m")  # 4 + 7 > 10: the tokens refuse it until t=1.0
    assert refusal is not None and refusal.headers["retry-after-ms"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "1"  # the refusal took nothing
    assert limiter.admit(6, "m")[0] is None
    clock.now += 0.1  # t=0.5: two requests in the window; the first frees at t=1.0
    refusal, headers = limiter.admit(0, "m")
    assert refusal is not None and isinstance(refusal.body, dict)
    assert refusal.body["error"]["type"] == "requests"
    assert refusal.headers["retry-after-ms"] == "500"
    assert headers["x-ratelimit-reset-requests"] == "900ms"  # the newest leaves at t=1.4
    clock.now += 0.5  # t=1.0: the first request has left the window (it is half-open)
    refusal, headers = limiter.admit(5, "m")  # the second's 6 tokens are still in: 6 + 5 > 10
    assert refusal is not None and refusal.headers["retry-after-ms"] == "400"
    assert limiter.admit(4, "m")[0] is None  # t=1.0: 0.4 (6 tokens) and now 1.0 (4 tokens)
    clock.now += 0.2
    # t=1.2: requests are full until t=1.4, tokens for 7 more until t=2.0. The 429 names the limit
    # that frees last, so a client that waits as told is not refused again.
    refusal, _ = limiter.admit(7, "m")
    assert refusal is not None and isinstance(refusal.body, dict)
    assert refusal.body["error"]["type"] == "tokens"
    assert refusal.headers["retry-after-ms"] == "800"
    stats = limiter.stats()
    assert stats.accepted == 3 and stats.rejected_429 == {"rpm": 1, "tpm": 3, "rpd": 0,
                                                          "too_large": 0}
    assert stats.accepted_at == (1000.0, 1000.4, 1001.0)
    assert [stats.most_in(w) for w in (1.0, 0.6, 0.4, 0.1)] == [2, 2, 1, 1]


def test_minute_headers_speak_per_minute_while_the_window_enforces_per_second() -> None:
    # OpenAI's way: 1200 RPM stated, counted down over the minute, enforced as 20 in any second.
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=1200, tpm=60000, window=1.0, headers="minute"), clock)
    for n in range(20):
        refusal, headers = limiter.admit(50, "m")
        assert refusal is None
        clock.now += 0.01
    assert headers == {
        "x-ratelimit-limit-requests": "1200", "x-ratelimit-remaining-requests": "1180",
        "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-remaining-tokens": "59000", "x-ratelimit-reset-tokens": "1m0s"}  # whole once the newest leaves
    refusal, headers = limiter.admit(50, "m")  # the 21st within a second, with 1180 left for the minute
    assert refusal is not None and refusal.status == 429 and isinstance(refusal.body, dict)
    assert refusal.body["error"]["type"] == "requests" and refusal.headers["retry-after-ms"] == "800"
    assert headers["x-ratelimit-remaining-requests"] == "1180"  # the refusal took nothing
    clock.now = 1001.0  # the first request has left the second: one more passes
    assert limiter.admit(50, "m")[0] is None
    clock.now = 1060.5  # the first twenty have left the minute; the one at t=1 is still in it
    assert limiter.admit(0, "m")[1]["x-ratelimit-remaining-requests"] == "1198"
    clock.now = 1200.0
    assert limiter.admit(0, "m")[1]["x-ratelimit-remaining-requests"] == "1199"  # whole again, less this one
    assert limiter.stats().rejected_429["rpm"] == 1


def test_minute_headers_never_promise_what_the_minute_refuses() -> None:
    # 30 RPM over 1 s windows is still one a second (never 0), 60 a minute: the minute's 30 binds too.
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=30, window=1.0, headers="minute"), clock)
    answers = []
    for _ in range(31):
        answers.append(limiter.admit(0, "m"))
        clock.now += 1.0
    assert [refusal is None for refusal, _ in answers] == [True] * 30 + [False]
    assert answers[29][1]["x-ratelimit-remaining-requests"] == "0"
    refusal = answers[30][0]
    assert refusal is not None and refusal.headers["retry-after-ms"] == "30000"  # when t=0 leaves the minute
    with pytest.raises(ValueError, match="headers must be one of window, minute"):
        Limits(rpm=1, headers="hour")


def test_minute_headers_over_real_http_and_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # 60 RPM enforced as 5 in any 5 s (room for a busy machine), the headers counting down from 60.
    with cli_server("--rpm", "60", "--window", "5", "--headers", "minute") as base_url:
        url = base_url + "/chat/completions"
        answers = [httpx2.post(url, json=ask(), timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["59", "58", "57", "56", "55", "55"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "60" for a in answers)
    with pytest.raises(SystemExit) as bad:
        server_main(["--headers", "minute"])
    assert bad.value.code == 2
    assert "--window and --headers need a limit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        server_main(["--help"])
    assert "'minute', as OpenAI's do" in " ".join(capsys.readouterr().out.split())


def test_a_request_counts_when_it_arrived_not_when_it_was_checked() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=120, window=1.0), clock)  # 2 requests a second
    clock.now = 1001.5  # the server was busy: both were checked long after they arrived
    assert limiter.admit(0, "m", at=1000.0)[0] is None
    assert limiter.admit(0, "m", at=1000.9)[0] is None
    assert limiter.admit(0, "m", at=1000.95)[0] is not None  # three within a second of arriving
    assert limiter.admit(0, "m", at=1000.5)[0] is not None  # checked out of order: counts as the latest
    assert limiter.admit(0, "m", at=1001.01)[0] is None
    assert limiter.stats().accepted_at == (1000.0, 1000.9, 1001.01)


def test_the_server_counts_a_request_from_its_arrival() -> None:
    with ChatServer(limits=Limits(rpm=600)) as server:
        before = time.monotonic()
        post(server)
        after = time.monotonic()
        (request,) = server.requests
        assert request.arrived is not None and before <= request.arrived <= after
        assert server.stats.accepted_at == (request.arrived,)


def test_without_limits_everything_is_accepted_and_counted() -> None:
    clock = FakeClock()
    limiter = Limiter(None, clock)
    assert [limiter.admit(10**9, "m") for _ in range(3)] == [(None, {})] * 3
    assert limiter.stats().accepted == 3 and limiter.stats().rejected == 0


def test_requests_over_the_window_get_openais_429_then_pass() -> None:
    limits = Limits(rpm=360, window=0.5)  # 3 requests in any 0.5 s
    with ChatServer(limits=limits) as server:
        server.enqueue(faults.completion("queued"))
        answers = [post(server) for _ in range(3)]
        time.sleep(0.02)  # on a fast machine the fourth could come within the header's millisecond of the third
        answers.append(post(server))
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        assert json.loads(answers[0][2])["choices"][0]["message"]["content"] == "queued"
        remaining = [a[1]["x-ratelimit-remaining-requests"] for a in answers]
        assert remaining == ["2", "1", "0", "0"]
        assert all(a[1]["x-ratelimit-limit-requests"] == "360" for a in answers)
        resets = [seconds(a[1]["x-ratelimit-reset-requests"]) for a in answers]
        assert resets[:3] == [0.5, 0.5, 0.5]  # the window, from each accepted request
        assert resets[3] < 0.5  # counts down: the newest request is already older
        for _, _, raw in answers[:3]:
            assert _spec.response_errors(json.loads(raw)) == []  # 200s still match the spec
        status, headers, raw = answers[3]
        assert "x-ratelimit-limit-tokens" not in headers  # no tpm, no token headers
        error = error_of(raw)
        assert (error["type"], error["code"], error["param"]) == (
            "requests", "rate_limit_exceeded", None)
        wait_ms = int(headers["retry-after-ms"])
        assert 0 < wait_ms < 500 and headers["retry-after"] == "1"
        assert error["message"].startswith(
            "Rate limit reached for gpt-4o-mini in organization org-flowrunnertest0000000000 on "
            "requests per min (RPM): Limit 360, Used 3, Requested 1. Please try again in ")
        assert error["message"].endswith(f"in {faults.go_duration(wait_ms / 1000)}. {RATE_LIMITS}")
        server.enqueue(faults.completion("after the wait"))  # the 429 did not take it
        time.sleep(wait_ms / 1000)
        status, headers, raw = post(server)
        assert status == 200 and headers["x-ratelimit-remaining-requests"] in ("0", "1", "2")
        assert json.loads(raw)["choices"][0]["message"]["content"] == "after the wait"
        stats = server.stats
        assert stats.accepted == 4 and stats.rejected_429["rpm"] == 1 and stats.rejected == 1
        assert len(server.requests) == 5


def test_a_concurrent_burst_gets_exactly_the_limit() -> None:
    with ChatServer() as warm:  # compile the spec's validators first, so the burst is quick
        post(warm)
    with ChatServer(limits=Limits(rpm=90, window=2.0)) as server:  # 3 in any 2 s
        with ThreadPoolExecutor(max_workers=12) as pool:
            burst = list(pool.map(lambda _: post(server)[0], range(12)))
        stats = server.stats
    assert sorted(burst) == [200] * 3 + [429] * 9
    assert stats.accepted == 3 and stats.rejected_429["rpm"] == 9


def test_clients_honouring_retry_after_never_exceed_the_limit() -> None:
    window = 0.2
    with ChatServer(limits=Limits(rpm=900, window=window)) as server:  # 3 in any 0.2 s

        def persistent(_: int) -> int:
            refused = 0
            for _ in range(2):
                while True:
                    status, headers, _ = post(server)
                    if status == 200:
                        break
                    refused += 1
                    time.sleep(int(headers["retry-after-ms"]) / 1000)
            return refused

        with ThreadPoolExecutor(max_workers=6) as pool:
            refused = sum(pool.map(persistent, range(6)))
        stats = server.stats
    assert stats.accepted == 12 and stats.rejected_429["rpm"] == refused > 0
    assert stats.most_in(window) <= 3  # never more, however the requests interleave
    assert stats.most_in(window * 2) <= 6


def test_tokens_cost_the_answers_usage_and_count_down() -> None:
    # Each "Ping the server" costs 8 tokens: 3 words asked, 5 answered ("You said: Ping the server").
    with ChatServer(limits=Limits(tpm=1200, window=0.5)) as server:  # 10 tokens per 0.5 s
        status, headers, raw = post(server, ask("Ping"))  # costs 1 + 3 ("You said: Ping") = 4
        assert status == 200 and json.loads(raw)["usage"]["total_tokens"] == 4
        assert headers["x-ratelimit-remaining-tokens"] == "6"
        assert headers["x-ratelimit-limit-tokens"] == "1200"
        assert "x-ratelimit-limit-requests" not in headers  # no request limit to state
    with ChatServer(limits=Limits(rpm=3000, tpm=1200, window=1.0)) as server:  # 20 tokens
        first, second, third = post(server), post(server), post(server)
        assert [first[0], second[0], third[0]] == [200, 200, 429]
        assert [first[1]["x-ratelimit-remaining-tokens"], second[1]["x-ratelimit-remaining-tokens"]
                ] == ["12", "4"]
        assert third[1]["x-ratelimit-remaining-requests"] == "48"  # requests were not the limit
        error = error_of(third[2])
        assert error["type"] == "tokens"
        assert "on tokens per min (TPM): Limit 1200, Used 16, Requested 8." in error["message"]
        assert 0 < int(third[1]["retry-after-ms"]) <= 1000
        assert server.stats.rejected_429 == {"rpm": 0, "tpm": 1, "rpd": 0, "too_large": 0}
        server.enqueue(faults.completion("two words"))  # a queued reply costs its own usage: 3
        assert post(server)[1]["x-ratelimit-remaining-tokens"] == "1"


def test_a_request_over_the_whole_token_budget_never_passes() -> None:
    text = " ".join(["word"] * 12)  # 12 + 14 = 26 tokens, over the window's 20
    with ChatServer(limits=Limits(tpm=12000, window=0.1)) as server:  # 20 tokens
        for _ in range(2):
            status, headers, raw = post(server, ask(text))
            assert status == 429 and "retry-after-ms" not in headers
            assert error_of(raw)["message"].startswith(
                "Request too large for gpt-4o-mini in organization org-flowrunnertest0000000000 "
                "on tokens per min (TPM): Limit 12000, Requested 26. The input or output tokens "
                "must be reduced in order to run successfully.")
            assert headers["x-ratelimit-remaining-tokens"] == "20"
            time.sleep(0.1)
        assert post(server)[0] == 200
        assert server.stats.rejected_429["too_large"] == 2 and server.stats.accepted == 1


def test_requests_per_day() -> None:
    with ChatServer(limits=Limits(rpd=2, window=0.05)) as server:
        statuses = []
        for _ in range(3):
            statuses.append(post(server))
            time.sleep(0.06)  # windows pass; the day does not
        assert [s[0] for s in statuses] == [200, 200, 429]
        assert [s[1]["x-ratelimit-remaining-requests"] for s in statuses] == ["1", "0", "0"]
        status, headers, raw = statuses[2]
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert 86300 < seconds(headers["x-ratelimit-reset-requests"]) <= 86400
        assert 86300_000 < int(headers["retry-after-ms"]) <= 86400_000
        error = error_of(raw)
        assert error["type"] == "requests"
        assert re.search(r"on requests per day \(RPD\): Limit 2, Used 2, Requested 1\. Please try "
                         r"again in 23h59m\d+(\.\d+)?s\.", error["message"]), error["message"]
        assert server.stats.rejected_429["rpd"] == 1


def test_limits_come_after_authentication_and_validation() -> None:
    with ChatServer(api_key="sk-right-key-123456", limits=Limits(rpm=1)) as server:
        assert post(server)[0] == 401  # no key: not counted
        conn_headers = {"authorization": "Bearer sk-right-key-123456"}
        with httpx2.Client(headers=conn_headers, timeout=5) as http:
            url = server.base_url + "/chat/completions"
            assert http.post(url, json={"model": "m"}).status_code == 400  # not counted
            assert http.post(url, json=ask()).status_code == 200
            refused = http.post(url, json=ask())
        assert refused.status_code == 429
        assert server.stats.accepted == 1


# -- latency --------------------------------------------------------------------------------------

def test_latency_delays_every_answer_and_overlaps() -> None:
    with ChatServer(latency=0.15) as server:
        started = time.perf_counter()
        assert post(server)[0] == 200
        assert time.perf_counter() - started >= 0.15
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: post(server)[0], range(8)))
        elapsed = time.perf_counter() - started
    assert statuses == [200] * 8
    assert 0.15 <= elapsed < 0.6  # eight waits side by side (1.2 s one after another)
    assert server.stats.accepted == 9 and server.stats.rejected == 0


# -- paced streams -------------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(30))  # "You said: " + 30 words: 11 text pieces


def stream_request(text: str = LONG, stream: bool = True) -> bytes:
    body = json.dumps({**ask(text), "stream": stream}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def exchange(sock: socket.socket, stream: Any, request: bytes,
             ) -> tuple[dict[str, str], list[tuple[float, bytes]]]:
    """One exchange read by hand: the headers, then each HTTP chunk of a chunked body with the time
    (since the request left) it was read whole; a Content-Length body is one "chunk"."""
    started = time.perf_counter()
    sock.sendall(request)
    assert stream.readline().startswith(b"HTTP/1.1 200")
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return headers, [(time.perf_counter() - started, stream.read(int(headers["content-length"])))]
    chunks = []
    while size := int(stream.readline(), 16):
        data = stream.read(size)
        chunks.append((time.perf_counter() - started, data))
        assert stream.read(2) == b"\r\n"
    assert stream.read(2) == b"\r\n"  # the last chunk's empty trailer
    return headers, chunks


def fetch_stream(server: ChatServer, request: bytes) -> tuple[dict[str, str],
                                                              list[tuple[float, bytes]]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock, \
            sock.makefile("rb") as stream:
        return exchange(sock, stream, request)


def without_created(body: bytes) -> bytes:
    return re.sub(rb'"created": \d+', b'"created": 0', body)  # the one field that follows the clock


def test_chunk_delay_sends_each_event_as_its_own_chunk_as_it_is_generated() -> None:
    with ChatServer() as plain_server:
        _, whole = fetch_stream(plain_server, stream_request())
    with ChatServer(chunk_delay=0.05) as server:
        headers, chunks = fetch_stream(server, stream_request())
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    times, pieces = [t for t, _ in chunks], [data for _, data in chunks]
    # The same events and [DONE] as the unpaced stream, byte for byte, one event per HTTP chunk.
    assert without_created(b"".join(pieces)) == without_created(whole[0][1])
    assert all(p.startswith(b"data: ") and p.endswith(b"\n\n") and p.count(b"\n\n") == 1
               for p in pieces)
    assert pieces[-1] == b"data: [DONE]\n\n" and len(pieces) == 14
    # As generated: the first event arrives at once, the last ~13 x 50 ms later, each on its own.
    assert times[0] < 0.2
    assert times[-1] - times[0] >= 0.8 * 13 * 0.05
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(gap >= 0.025 for gap in gaps) >= len(gaps) - 2, gaps


def test_a_scripted_stream_is_paced_as_given_and_keeps_the_connection() -> None:
    sse = ('data: {"n": 1}\r\n\r\n: keep-alive\r\n\r\ndata: {"n": 2}\r\n\r\n'
           "data: [DONE]\r\n\r\n")
    stream_type = "text/event-stream; charset=utf-8"
    with ChatServer(chunk_delay=0.3) as server:
        server.enqueue(Reply(body=sse, content_type=stream_type, chunk_delay=0.04),
                       Reply(body=sse, content_type=stream_type, chunk_delay=0),
                       Reply(body=sse, content_type=stream_type))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock, \
                sock.makefile("rb") as stream:
            own = exchange(sock, stream, stream_request())  # its own 40 ms, not the server's
            whole = exchange(sock, stream, stream_request())  # 0: sent whole
            servers = exchange(sock, stream, stream_request())  # None: the server's 300 ms
            json_answer = exchange(sock, stream, stream_request(stream=False))
    headers, chunks = own
    assert headers["transfer-encoding"] == "chunked"
    assert [data for _, data in chunks] == [
        b'data: {"n": 1}\r\n\r\n', b": keep-alive\r\n\r\n", b'data: {"n": 2}\r\n\r\n',
        b"data: [DONE]\r\n\r\n"]
    assert 3 * 0.04 <= chunks[-1][0] - chunks[0][0] < 0.3
    assert whole[0]["content-length"] == str(len(sse)) and whole[1][0][1] == sse.encode()
    assert servers[1][-1][0] - servers[1][0][0] >= 3 * 0.3
    assert b"".join(data for _, data in servers[1]) == sse.encode()
    # A JSON answer is never paced; all four exchanges shared one connection.
    assert "content-length" in json_answer[0]
    assert json.loads(json_answer[1][0][1])["choices"][0]["message"]["content"].startswith("You")


def test_a_paced_stream_can_be_cut_by_truncate_or_by_stop() -> None:
    server = ChatServer(chunk_delay=0.05).start()
    try:
        _, whole = fetch_stream(server, stream_request())
        body = b"".join(data for _, data in whole)
        server.enqueue(faults.truncated(Reply(body=body, content_type="text/event-stream")))
        received: list[str] = []
        with pytest.raises(httpx2.RemoteProtocolError):
            with httpx2.stream("POST", server.base_url + "/chat/completions",
                               json={**ask(LONG), "stream": True}, timeout=5) as response:
                assert response.headers["transfer-encoding"] == "chunked"
                received.extend(response.iter_lines())
        assert 0 < "\n".join(received).count("data: ") < body.count(b"data: ")
        assert "".join(received).encode() in body.replace(b"\n", b"")
        # The server stops mid-stream: the connection closes then, not after the last event.
        thread, caught = in_background(lambda: fetch_stream(server, stream_request()))
        time.sleep(0.15)
    finally:
        stopped = stop_timed(server)
    thread.join(timeout=2)
    assert stopped < 0.3 and not thread.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], ValueError)  # b"" where a chunk size was due


def test_chunk_delays_are_checked() -> None:
    for bad in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="chunk_delay must be"):
            Reply(chunk_delay=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunk_delay must be"):
            ChatServer(chunk_delay=bad)  # type: ignore[arg-type]
    assert Reply().chunk_delay is None and ChatServer().chunk_delay == 0.0


# -- the command line ------------------------------------------------------------------------------

@contextlib.contextmanager
def cli_server(*options: str) -> Iterator[str]:
    """`python -m flowrunner.testing.server --port 0 OPTIONS` running; its base URL."""
    command = [sys.executable, "-m", "flowrunner.testing.server", "--port", "0", *options]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline() if process.stdout else ""
            match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
            assert match, line
            yield match.group()
        finally:
            process.kill()
            process.communicate()


def test_command_line_limits_and_latency(capsys: pytest.CaptureFixture[str]) -> None:
    with cli_server("--rpm", "60", "--tpm", "100000", "--window", "1", "--latency", "0.05") as base_url:
        url = base_url + "/chat/completions"
        started = time.perf_counter()
        first = httpx2.post(url, json=ask(), timeout=5)
        assert time.perf_counter() - started >= 0.05
        second = httpx2.post(url, json=ask(), timeout=5)
    assert first.status_code == 200 and second.status_code == 429
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    with pytest.raises(SystemExit) as bad:
        server_main(["--rpm", "0"])
    assert bad.value.code == 2
    assert "error: rpm must be a whole number >= 1 or None, got 0" in capsys.readouterr().err


def test_command_line_chunk_delay_paces_streams(capsys: pytest.CaptureFixture[str]) -> None:
    arrivals: list[float] = []
    with cli_server("--chunk-delay", "0.05") as base_url:
        started = time.perf_counter()
        with httpx2.stream("POST", base_url + "/chat/completions",
                           json={**ask(LONG), "stream": True}, timeout=5) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            for text in response.iter_lines():
                if text.startswith("data: "):
                    arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 14  # 13 chunks and [DONE]
    assert arrivals[-1] - arrivals[0] >= 0.8 * 13 * 0.05
    with pytest.raises(SystemExit) as bad:
        server_main(["--chunk-delay", "-1"])
    assert bad.value.code == 2
    assert "error: chunk_delay must be a number of seconds >= 0, got -1.0" in capsys.readouterr().err


def test_connection_reset_is_a_real_rst() -> None:
    """At the socket level: recv raises ECONNRESET, not an orderly end of stream (b"")."""
    with ChatServer() as server:
        server.enqueue(faults.connection_reset())
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            body = json.dumps(ask()).encode()
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            with pytest.raises(ConnectionResetError):
                sock.recv(1024)
