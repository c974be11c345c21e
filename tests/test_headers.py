"""The numbers a server's headers state, read as hostile input: nothing a header says can crash or stall a run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from flowrunner._durations import LONGEST
from flowrunner._exceptions import APIError
from flowrunner._headers import count, date_wait, go_duration, seconds
from flowrunner._ratelimit import RateLimit, RateLimiter
from flowrunner._retry import server_delay
from flowrunner.testing import ChatServer, Reply, faults

from conftest import clean_env

# What a broken proxy, a buggy gateway or a fuzzer may send instead of a number.
HOSTILE = [
    "", " ", "-5", "-5s", "-1ms", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "1e10", "1e5s", "0x10",
    "9" * 400, "9" * 400 + "s", "9" * 10_000, "1" * 5000 + "ms", "x" * 10_000, "٣", "٣s", "²", "1_000",
    "1_000s", "3\u00a0", "5s\x00", "1.5.5s", "NaNs", "µs", "ms", "1 s", "1e-5", "１０",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_hostile_text_is_read_as_a_number(text):
    assert count(text) is None
    assert seconds(text) is None and seconds(text, unit=0.001) is None
    assert go_duration(text) is None


@pytest.mark.parametrize("text, expected", [("0", 0), ("3", 3), (" 42 ", 42), ("10000", 10000),
                                            ("999999999999999999", 999999999999999999)])
def test_counts(text, expected):
    assert count(text) == expected


@pytest.mark.parametrize("text, unit, expected", [("2", 1.0, 2.0), ("0", 1.0, 0.0), ("1.5", 1.0, 1.5),
                                                  (" 20 ", 0.001, 0.02), ("250.5", 0.001, 0.2505),
                                                  ("604800", 1.0, LONGEST)])
def test_seconds(text, unit, expected):
    assert seconds(text, unit=unit) == pytest.approx(expected)


def test_a_wait_longer_than_a_week_is_no_wait_anyone_meant():
    assert seconds("604801") is None and seconds("604800001", unit=0.001) is None
    assert go_duration("169h") is None and go_duration("168h") == LONGEST


@pytest.mark.parametrize("text, expected", [("Thu, 01 Jan 1970 00:00:30 GMT", 30.0),
                                            ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0)])
def test_http_dates(text, expected):
    assert date_wait(text, now=0.0) == pytest.approx(expected)


@pytest.mark.parametrize("text", HOSTILE + ["Mon, 01 Jan 0001 00:00:00 -0000", "Fri, 31 Dec 9999 23:59:59 GMT",
                                            "Fri, 31 Dec 99999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:30 GMT" * 400,
                                            "Thu, 32 Jan 1970 00:00:30 GMT", "Thu, 01 Jan 1970 25:61:61 +9999"])
def test_hostile_http_dates_are_none_or_a_sane_wait(text):
    wait = date_wait(text, now=0.0)
    assert wait is None or 0.0 <= wait <= LONGEST


NAMES = ["retry-after", "retry-after-ms", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
         "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-limit-requests",
         "x-ratelimit-limit-tokens"]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_retry_delay_and_the_limiter_ignore_hostile_headers(text):
    # Each header hostile on its own, the others saying a budget is spent: nothing raises, and any wait is sane.
    for name in NAMES:
        headers = {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": "1s", name: text}
        delay = server_delay(APIError("HTTP 429", status=429, headers=headers))
        assert delay is None or 0.0 <= delay <= LONGEST
        for declared in (RateLimit(), RateLimit(rpm=6000, tpm=10**9)):
            limiter = RateLimiter(declared, sleep=lambda _: None)
            limiter.observe(headers, rate_limited=delay)
            limiter.acquire(100, longest_wait=LONGEST).finished(headers, rate_limited=delay)


# -- over HTTP: a run and a batch meet the headers as a server sends them -----------------------------------

FLOW = """\
name: headers
model: gpt-4o-mini
retry: {backoff: {initial: 5ms, max: 10ms}}
inputs:
  question: {type: string, default: Hello there}
steps:
  - id: a
    messages: [{role: user, content: "{{ inputs.question }}"}]
"""

# A stated limit of 0 is no limit anyone can be paced at (a plausible one, such as 3, is learned and
# paced at: a batch of 20 at 3 RPM takes minutes).
ABSURD = {"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "9" * 400 + "s", "x-ratelimit-limit-tokens": "²",
          "x-ratelimit-remaining-tokens": "9" * 10_000, "x-ratelimit-reset-tokens": "inf",
          "retry-after": "1e400", "retry-after-ms": "-5", "openai-processing-ms": "nan"}


def flowrun(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], capture_output=True, text=True,
                          env=clean_env(), timeout=timeout)


@pytest.mark.server
def test_a_429_with_absurd_headers_is_retried_not_a_traceback(chat_server, tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    chat_server.enqueue(Reply(429, faults.rate_limited().body, ABSURD, content_type="application/json"))
    process = flowrun("run", str(path), "--base-url", chat_server.base_url)
    assert "Traceback" not in process.stderr
    assert process.returncode == 0, process.stderr
    assert len(chat_server.requests) == 2 and "retrying in" in process.stderr


@pytest.mark.server
def test_a_batch_after_absurd_headers_runs_every_line_and_counts_the_requests_sent(chat_server, tmp_path):
    path, inputs, out = tmp_path / "flow.yaml", tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    path.write_text(FLOW)
    inputs.write_text("".join(json.dumps({"question": f"Hello number {i}"}) + "\n" for i in range(20)))
    # A 200 whose headers say the budget is spent "until forever", then a 429 saying the same.
    chat_server.enqueue(Reply(body=faults.completion("hi").body, headers=ABSURD),
                        Reply(429, faults.rate_limited().body, ABSURD, content_type="application/json"))
    process = flowrun("batch", str(path), "--inputs", str(inputs), "--out", str(out), "--base-url",
                      chat_server.base_url, "--concurrency", "1")
    assert "Traceback" not in process.stderr
    assert process.returncode == 0, process.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 20 and all(line["status"] == "succeeded" for line in lines), lines
    sent = len(chat_server.requests)
    assert sent == 21  # 20 answers and the 429, retried
    assert process.stdout.startswith("batch finished: 20 succeeded, 0 failed")
    assert f"  {sent} requests," in process.stdout, process.stdout


def test_the_summary_counts_no_request_that_was_never_sent(make_flow, tmp_path):
    # A daily limit of 2: the third run is refused before anything leaves, so 2 requests, not 3.
    from flowrunner import Engine, FunctionTransport
    from flowrunner._batch import BatchRunner

    flow = make_flow(textwrap.dedent(FLOW).replace("retry:", "rate_limit: {rpd: 2}\nretry:"))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3)))
    transport = FunctionTransport(lambda request: faults.completion("hi").body)  # type: ignore[arg-type,return-value]
    summary = BatchRunner(Engine(transport, limiter=RateLimiter()), flow, inputs, tmp_path / "out.jsonl",
                          concurrency=1).run()
    assert summary.halted is not None and len(transport.requests) == 2
    assert summary.progress.requests == 2
