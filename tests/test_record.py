"""The run record's timing fields: present at every level, in order, consistent with each other, live
and replayed (relations only, never absolute timings), and dropped whole by `without_timing`."""

from __future__ import annotations

import shutil

import pytest

from flowrunner import Engine, OpenAITransport, load_flow, use_cassette
from flowrunner._ratelimit import RateLimiter
from flowrunner._record import TIMING_FIELDS, RunRecord, without_timing
from flowrunner.testing import ChatServer, faults

from conftest import FLOWS

pytestmark = pytest.mark.server


def run(flow, server, **engine):
    with OpenAITransport(base_url=server.base_url) as transport:
        return Engine(transport, limiter=RateLimiter(), **engine).run(flow)


def weather(tmp_path, extra=""):
    """flows/weather.yaml (a round calling a function, then the answer), with `extra` top-level keys."""
    shutil.copy(FLOWS / "weather_tools.py", tmp_path / "weather_tools.py")
    text = (FLOWS / "weather.yaml").read_text().replace("\nsteps:", f"\n{extra}\nsteps:", 1)
    (tmp_path / "weather.yaml").write_text(text)
    return load_flow(tmp_path / "weather.yaml")


def check_order(record: RunRecord) -> None:
    """What holds of any record: each part begins within its parent and its parts follow one another."""
    assert record.started is not None and record.duration is not None and record.duration >= 0
    end = record.started + record.duration
    previous = record.started
    for step in record.steps:
        assert step.started is not None and step.duration is not None and step.duration >= 0
        assert previous <= step.started and step.started + step.duration <= end + 0.01
        previous = step.started
        for round_ in step.rounds:
            assert round_.started is not None and round_.sent is not None and round_.latency is not None
            assert previous <= round_.started <= round_.sent
            assert round_.waited_rate_limit is not None and round_.waited_rate_limit >= 0
            assert round_.waited_retry is not None and round_.waited_retry >= 0
            answered = round_.sent + round_.latency
            assert answered <= step.started + step.duration + 0.01
            last = round_.attempts[-1]
            assert (last.started, last.duration) == (round_.sent, round_.latency)
            for call in round_.calls:
                assert call.started is not None and call.duration is not None and call.duration >= 0
                assert answered <= call.started + 0.01
            previous = max([answered] + [c.started + c.duration for c in round_.calls])


def test_a_run_is_timed_at_every_level_in_order(tmp_path):
    with ChatServer(latency=0.05) as server:
        record = run(weather(tmp_path), server)
    assert record.status == "succeeded", record.error
    check_order(record)
    (step,) = record.steps
    assert len(step.rounds) == 2 and step.rounds[0].calls
    for round_ in step.rounds:
        assert round_.latency is not None and round_.latency >= 0.05  # the server took at least that
        assert round_.ttft is None  # not streamed
        assert round_.waited_retry == 0 and len(round_.attempts) == 1
    assert record.duration is not None and record.duration >= 0.1
    data = record.to_dict()
    assert {"started", "duration"} <= data.keys() and "ttft" in data["steps"][0]["rounds"][0]
    assert "started" in data["steps"][0]["rounds"][0]["calls"][0]


def test_a_streamed_round_has_its_time_to_first_chunk(make_flow):
    flow = make_flow("""
        name: streamed
        model: gpt-4o-mini
        steps:
          - id: s
            stream: true
            messages: [{role: user, content: Tell me a story}]
        outputs: {text: "{{ steps.s.content }}"}
    """)
    with ChatServer(chunk_delay=0.02) as server:
        record = run(flow, server)
    assert record.status == "succeeded", record.error
    check_order(record)
    (round_,) = record.steps[0].rounds
    assert round_.ttft is not None and round_.latency is not None
    assert 0 <= round_.ttft and round_.ttft + 0.02 <= round_.latency  # chunks kept coming after the first


def test_a_retried_round_records_its_backoff_and_every_attempt(make_flow, chat_server):
    flow = make_flow("""
        name: retried
        model: gpt-4o-mini
        retry: {backoff: {initial: 50ms, jitter: none}}
        steps:
          - id: s
            messages: [{role: user, content: hi}]
        outputs: {text: "{{ steps.s.content }}"}
    """)
    chat_server.enqueue(faults.server_error(), faults.server_error(), faults.completion("hi"))
    record = run(flow, chat_server)
    assert record.status == "succeeded", record.error
    check_order(record)
    (round_,) = record.steps[0].rounds
    assert [a.status for a in round_.attempts] == [500, 500, 200]
    assert round_.waited_retry is not None and round_.waited_retry >= 0.05 + 0.1  # 50 ms, then 100 ms
    for before, after in zip(round_.attempts, round_.attempts[1:]):
        assert before.started is not None and before.duration is not None and after.started is not None
        assert before.started + before.duration + before.slept <= after.started + 0.01
    assert round_.started is not None and round_.sent is not None
    assert round_.sent - round_.started >= round_.waited_retry  # the last attempt left after the waits


def test_a_failed_round_keeps_its_timings(make_flow, chat_server):
    flow = make_flow("""
        name: failing
        model: gpt-4o-mini
        retry: {max_attempts: 2, backoff: {initial: 10ms, jitter: none}}
        steps:
          - id: s
            messages: [{role: user, content: hi}]
        outputs: {text: "{{ steps.s.content }}"}
    """)
    chat_server.enqueue(faults.server_error(), faults.server_error())
    record = run(flow, chat_server)
    assert record.status == "failed"
    check_order(record)
    assert all(a.started is not None and a.duration is not None for a in record.steps[0].rounds[0].attempts)


def test_a_rate_limited_round_records_its_wait_for_a_turn(tmp_path, chat_server):
    # At 20 requests a minute, the second request's turn comes 3 s after the first's departure.
    record = run(weather(tmp_path, "rate_limit: {rpm: 20}"), chat_server)
    assert record.status == "succeeded", record.error
    check_order(record)
    first, second = record.steps[0].rounds
    assert second.waited_rate_limit is not None and second.waited_rate_limit > 0
    assert second.sent is not None and second.started is not None
    assert second.sent - second.started >= second.waited_rate_limit


def test_a_replay_is_timed_too_and_equals_the_live_run_without_timing(tmp_path, chat_server):
    flow = weather(tmp_path)
    cassette = tmp_path / "cassettes" / "weather.yaml"
    with use_cassette(cassette, "once"):
        live = run(flow, chat_server)
    with use_cassette(cassette, "none"), OpenAITransport() as transport:
        replayed = Engine(transport).run(flow)
    assert replayed.status == "succeeded", replayed.error
    check_order(replayed)
    assert replayed.to_dict() != live.to_dict()  # the timings differ...
    assert without_timing(replayed.to_dict()) == without_timing(live.to_dict())  # ...and only they


def test_a_chat_turn_is_timed(make_flow, chat_server):
    flow = make_flow("""
        name: chatty
        model: gpt-4o-mini
        steps:
          - id: s
            messages: [{role: system, content: Be brief.}]
    """)
    with OpenAITransport(base_url=chat_server.base_url) as transport:
        session = Engine(transport, limiter=RateLimiter()).chat(flow)
        turn = session.send("hello")
    assert turn.started is not None and turn.duration is not None
    (round_,) = turn.rounds
    assert round_.started is not None and turn.started <= round_.started


def test_without_timing_drops_exactly_the_timing_fields_and_nothing_of_the_data():
    data = {
        "flow": "f", "started": 1.0, "duration": 2.0, "usage": {"total_tokens": 3},
        "steps": [{"id": "s", "started": 1.0, "duration": 1.0, "rounds": [{
            "content": "x", **dict.fromkeys(["started", "sent", "latency", "ttft", "waited_rate_limit",
                                             "waited_retry"], 0.5),
            "attempts": [{"status": 200, "started": 1.0, "duration": 0.1, "slept": 0.0}],
            "calls": [{"name": "f", "started": 1.0, "duration": 0.1,
                       "arguments": {"duration": 5}, "result": {"started": "yesterday"}}],
        }]}],
    }
    assert without_timing(data) == {
        "flow": "f", "usage": {"total_tokens": 3},
        "steps": [{"id": "s", "rounds": [{
            "content": "x",
            "attempts": [{"status": 200, "slept": 0.0}],
            "calls": [{"name": "f", "arguments": {"duration": 5}, "result": {"started": "yesterday"}}],
        }]}],
    }
    assert TIMING_FIELDS == {"started", "duration", "sent", "latency", "ttft", "waited_rate_limit", "waited_retry"}


def test_each_round_keeps_its_request_as_sent_not_as_the_conversation_went_on(tmp_path, chat_server):
    record = run(weather(tmp_path), chat_server)
    assert record.status == "succeeded", record.error
    first, second = record.steps[0].rounds
    sent = [request.body for request in chat_server.requests]
    assert first.request == sent[0] and second.request == sent[1]  # what the server received, whole
    assert [m["role"] for m in first.request["messages"]] == ["system", "user"]  # not grown by later messages
    assert [m["role"] for m in second.request["messages"]] == ["system", "user", "assistant", "tool"]
    assert first.request["tools"][0]["function"]["name"] == "get_current_weather"
