"""A request's total deadline: a server that keeps sending a little (a keep-alive, a byte a second) ends
at the deadline with a timeout, retried as the step's policy says, instead of holding a run forever."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Callable

import pytest

from flowrunner import APITimeoutError, Engine, OpenAITransport
from flowrunner._deadline import ANSWER, STREAM, Deadline, deadline_for
from flowrunner._ratelimit import RateLimiter
from flowrunner.testing import ChatServer, Reply, faults

from conftest import clean_env
from test_testserver_faults import in_background

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Hello world"}]}
SSE = Reply(body="data: [DONE]\n\n", content_type="text/event-stream")


def test_default_deadlines_a_few_minutes_for_an_answer_longer_for_a_stream_never_below_the_timeout():
    assert (ANSWER, STREAM) == (600.0, 1800.0)
    assert deadline_for(stream=False, given=None, timeout=30).seconds == ANSWER
    assert deadline_for(stream=True, given=None, timeout=30).seconds == STREAM
    assert deadline_for(stream=False, given=None, timeout=900).seconds == 900  # --timeout 900 alone still waits 900 s
    assert deadline_for(stream=True, given=5.0, timeout=900).seconds == 5.0  # given: as given


def test_a_deadline_passes_on_its_clock_and_says_how_to_raise_it():
    now = [0.0]
    deadline = Deadline(90.0, "a stream's default", clock=lambda: now[0])
    assert list(deadline.pieces([b"a", b"b"])) == [b"a", b"b"]
    now[0] = 90.5
    with pytest.raises(APITimeoutError, match=r"longer than its deadline of 1m30s \(a stream's default\)") as caught:
        list(deadline.pieces([b"c"]))
    assert "--deadline" in str(caught.value)


def guarded(call: Callable[[], Any], server: ChatServer, seconds: float = 30.0) -> list[BaseException]:
    """`call` on a thread; if it is still running after `seconds`, the server stops (ending any trickle),
    so a regression fails the test instead of hanging the suite."""
    thread, caught = in_background(call)
    thread.join(seconds)
    hung = thread.is_alive()
    if hung:
        server.stop()
        thread.join(5)
    assert not hung, "the request outlived its deadline"
    return caught


@pytest.mark.server
@pytest.mark.parametrize("reply, request_body", [(faults.completion(), REQUEST), (SSE, {**REQUEST, "stream": True})])
def test_a_trickled_answer_ends_at_the_deadline_not_the_read_timeout(chat_server, reply, request_body):
    chat_server.enqueue(faults.trickled(reply, every=0.05))
    with OpenAITransport(base_url=chat_server.base_url, timeout=5, deadline=0.5) as transport:
        caught = guarded(lambda: transport.complete(request_body), chat_server)
    assert len(caught) == 1 and isinstance(caught[0], APITimeoutError), caught
    assert "longer than its deadline of 500ms (--deadline)" in str(caught[0])


@pytest.mark.server
def test_a_silent_server_is_cut_within_the_deadline_too(chat_server):
    chat_server.enqueue(faults.timeout_reply())
    with OpenAITransport(base_url=chat_server.base_url, timeout=600, deadline=0.3) as transport:
        caught = guarded(lambda: transport.complete(REQUEST), chat_server)
    assert len(caught) == 1 and isinstance(caught[0], APITimeoutError), caught
    assert "deadline of 300ms (--deadline)" in str(caught[0])


@pytest.mark.server
def test_a_request_past_its_deadline_is_retried_like_any_timeout(chat_server, make_flow):
    flow = make_flow("""
        name: trickled
        model: gpt-4o-mini
        retry: {max_attempts: 3, backoff: {initial: 5ms, max: 10ms}}
        steps:
          - id: a
            messages: [{role: user, content: "Hello there"}]
    """)
    chat_server.enqueue(faults.trickled(every=0.05), faults.completion("At last."))
    records: list[Any] = []
    with OpenAITransport(base_url=chat_server.base_url, timeout=5, deadline=0.5) as transport:
        guarded(lambda: records.append(Engine(transport, limiter=RateLimiter()).run(flow)), chat_server)
    (record,) = records
    assert record.status == "succeeded" and record.steps[0].content == "At last."
    attempts = record.steps[0].rounds[0].attempts
    assert [a.error for a in attempts] == ["APITimeoutError", None]
    assert "deadline" in attempts[0].message


FLOW = """\
name: trickled
model: gpt-4o-mini
retry: {max_attempts: 2, backoff: {initial: 5ms, max: 10ms}}
steps:
  - id: a
    stream: true
    messages: [{role: user, content: "Hello there"}]
"""


@pytest.mark.server
def test_flowrun_gives_up_a_trickled_stream_at_its_deadline_and_says_how_to_raise_it(chat_server, tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    chat_server.enqueue(*[faults.trickled(SSE, every=0.05)] * 2)
    process = subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", str(path), "--base-url",
                              chat_server.base_url, "--deadline", "1s", "--timeout", "30"],
                             capture_output=True, text=True, env=clean_env(), timeout=60)
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert "longer than its deadline of 1s (--deadline)" in process.stderr
    assert "gave up after 2 attempts" in process.stderr and len(chat_server.requests) == 2


def test_the_help_says_what_timeout_and_deadline_bound():
    process = subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", "--help"], capture_output=True,
                             text=True, env=clean_env(), timeout=60)
    help_text = " ".join(process.stdout.split())
    assert "--deadline SECONDS" in help_text and "--timeout SECONDS" in help_text
    assert "default: 10m for an answer, 30m for a stream" in help_text
    assert "between two pieces of the answer" in help_text


def test_the_command_that_resumes_a_batch_keeps_its_deadline():
    import argparse

    from flowrunner._cli.batch import resume_command

    args = argparse.Namespace(flow="f.yaml", inputs_file="in.jsonl", out="out.jsonl", retry_failed=False,
                              concurrency=8, model=None, base_url=None, cassette=None, record_mode=None,
                              rate_limit=None, timeout=600.0, deadline=90.0, full_record=False)
    assert resume_command(args).endswith("--resume --deadline 90")
