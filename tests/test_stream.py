"""Streamed answers: folding chunks into one completion (on the genuine OpenAI streams in tests/data),
and the pieces reaching the engine's handler and the terminal as they arrive."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowrunner._stream import StreamFormatError, accumulate, iter_events
from flowrunner._transport import parse_completion

REAL = Path(__file__).parent / "data" / "real-responses"


def load(name: str) -> dict:
    return json.loads((REAL / name).read_text())


def test_single_tool_call_with_usage():
    completion = parse_completion(accumulate(iter_events(load("06-stream-tool-call-with-usage.json")["body"].splitlines())))
    assert completion.finish_reason == "tool_calls"
    (call,) = completion.tool_calls
    assert call.name == "multiply" and call.id.startswith("call_")
    assert isinstance(json.loads(call.arguments), dict)
    assert completion.usage["total_tokens"] > 0
    assert completion.message["tool_calls"][0]["function"]["arguments"] == call.arguments


def test_parallel_tool_calls_by_index():
    completion = parse_completion(accumulate(iter_events(load("07-stream-parallel-tool-calls.json")["body"].splitlines())))
    assert [c.name for c in completion.tool_calls] == ["get_current_weather", "get_current_weather"]
    locations = [json.loads(c.arguments)["location"] for c in completion.tool_calls]
    assert len(set(locations)) == 2
    assert len({c.id for c in completion.tool_calls}) == 2


def test_content_pieces_join_and_done_stops():
    lines = [
        'data: {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}', "",
        ": keep-alive", "",
        'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}', "",
        'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}', "",
        "data: [DONE]", "",
        'data: {"never": "read"}', "",
    ]
    completion = parse_completion(accumulate(iter_events(lines)))
    assert (completion.content, completion.finish_reason, completion.id) == ("Hello", "stop", "c1")


@pytest.mark.parametrize("lines", [["data: {not json", ""], ["data: [1, 2]", ""]])
def test_malformed_events_are_errors(lines):
    with pytest.raises(StreamFormatError):
        list(iter_events(lines))


def test_empty_stream_is_an_error():
    with pytest.raises(StreamFormatError, match="before any chunk"):
        accumulate(iter_events(["data: [DONE]", ""]))


# -- streamed steps through the engine and the CLI -------------------------------------------------

STREAMED = """
    model: m
    functions:
      get_current_weather:
        entry: tools:get_current_weather
        description: Get the current weather in a given location
        parameters: {type: object, properties: {location: {type: string}}, required: [location]}
    steps:
      - id: answer
        stream: true
        functions: [get_current_weather]
        messages: [{role: user, content: "What's the weather in Boston?"}]
"""
STREAM_TOOLS = """
    def get_current_weather(location):
        return {"location": location, "temperature": "72"}
"""


def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_a_streamed_step_emits_deltas_as_they_arrive_and_collects_usage(make_flow):
    from flowrunner import Engine, FunctionTransport

    call_stream = [
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Boston"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    text_stream = [chunk({"role": "assistant", "content": ""}), chunk({"content": "It is "}),
                   chunk({"content": "72."}), chunk({}, "stop"),
                   {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}]
    answers = [call_stream, text_stream]
    transport = FunctionTransport(lambda request: answers.pop(0))
    events = []
    record = Engine(transport, on_event=events.append).run(make_flow(STREAMED, tools=STREAM_TOOLS))
    assert record.status == "succeeded", record.error
    assert record.outputs == {"answer": "It is 72."}
    deltas = [(e.round, e.tool, e.text) for e in events if e.kind == "delta"]
    assert deltas == [(1, "get_current_weather", '{"location": '), (1, "get_current_weather", '"Boston"}'),
                      (2, None, "It is "), (2, None, "72.")]
    assert record.steps[0].rounds[0].calls[0].arguments == {"location": "Boston"}
    assert record.usage["total_tokens"] == 12
    assert transport.requests[0]["stream_options"] == {"include_usage": True}


def test_flowrun_shows_a_streamed_answer_once_and_json_stays_clean(make_flow, chat_server, tmp_path, capsys,
                                                                  monkeypatch):
    from flowrunner._cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make_flow(STREAMED, tools=STREAM_TOOLS)
    cassette = tmp_path / "stream.yaml"
    assert main([str(flow.path), "--base-url", chat_server.base_url, "--cassette", str(cassette)]) == 0
    out, err = capsys.readouterr()
    answer = "get_current_weather: location Boston, temperature 72."
    assert out == answer + "\n"  # streamed, then not printed a second time
    assert chat_server.requests[0].body["stream"] is True
    assert "text/event-stream" in cassette.read_text()
    # The stream replays from the cassette, and --json keeps stdout for the record alone.
    assert main([str(flow.path), "--cassette", str(cassette), "--record-mode", "none", "--json"]) == 0
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert record["outputs"] == {"answer": answer}
    assert record["usage"]["total_tokens"] > 0


# -- over real HTTP, against a server that paces its streams as a model generates them -------------

PACED_TOOLS = """
    def get_current_weather(location):
        return {"location": location, "temperature": "72", "forecast": [
            "sunny in the morning", "light showers after lunch", "clearing towards evening",
            "a cool and breezy night"]}
"""
PACED_ANSWER = ("get_current_weather: location Boston, temperature 72, forecast sunny in the morning, "
                "light showers after lunch, clearing towards evening and a cool and breezy night.")
CHUNK_DELAY = 0.05  # the server's pause between events: 8 events for the call, 12 for the answer (with [DONE])


@pytest.mark.server
def test_deltas_reach_the_handler_as_the_server_sends_them(make_flow):
    from flowrunner import Engine, OpenAITransport
    from flowrunner.testing import ChatServer

    flow = make_flow(STREAMED, tools=PACED_TOOLS)
    timed: list[tuple[float, object]] = []
    with ChatServer(chunk_delay=CHUNK_DELAY) as server:
        with OpenAITransport(base_url=server.base_url, api_key="test", timeout=10) as transport:
            engine = Engine(transport, on_event=lambda event: timed.append((time.perf_counter(), event)))
            started = time.perf_counter()
            record = engine.run(flow)
            ended = time.perf_counter()
    assert record.status == "succeeded", record.error
    assert record.outputs == {"answer": PACED_ANSWER}
    deltas = [(at, event) for at, event in timed if event.kind == "delta"]
    arguments = [(at, e.text) for at, e in deltas if e.round == 1 and e.tool == "get_current_weather"]
    text = [(at, e.text) for at, e in deltas if e.round == 2 and e.tool is None]
    assert len(deltas) == len(arguments) + len(text)
    # The call's arguments came in pieces, and so did the answer; together they are what was run.
    assert len(arguments) == 3 and json.loads("".join(t for _, t in arguments)) == {"location": "Boston"}
    assert len(text) == 8 and "".join(t for _, t in text) == PACED_ANSWER
    # As the server sent them: the first piece long before the run ended, the others spread out.
    assert deltas[0][0] - started < ended - 0.3 - started
    for pieces in (arguments, text):
        times = [at for at, _ in pieces]
        assert times[-1] - times[0] >= 0.8 * (len(times) - 1) * CHUNK_DELAY, times
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert sum(gap >= CHUNK_DELAY / 2 for gap in gaps) >= len(gaps) - 1, gaps
    # The answer's first words were there while its last ones were still to come (10 events later).
    assert text[0][0] < ended - 0.8 * 10 * CHUNK_DELAY


def test_what_a_chunk_handler_raises_is_its_own_error_not_a_malformed_stream():
    chunks = list(iter_events(load("06-stream-tool-call-with-usage.json")["body"].splitlines()))

    def broken_display(chunk):
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        accumulate(iter(chunks), broken_display)


def test_a_streamed_refusal_folds_into_the_message_refusal():
    completion = parse_completion(accumulate(iter_events(load("10-stream-refusal.json")["body"].splitlines())))
    assert completion.content is None and completion.finish_reason == "stop"
    assert completion.refusal == "I'm very sorry, but I can't assist with that request."
    assert completion.usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_a_streamed_spoken_answer_folds_its_pieces_into_message_audio():
    from test_answers import AUDIO_ID, PIECES, SPOKEN_STREAM  # spec-built (the spec has no delta.audio), not recorded

    completion = parse_completion(accumulate(SPOKEN_STREAM))
    assert completion.content is None and completion.finish_reason is None  # its last chunk had none
    assert completion.audio == {"id": AUDIO_ID, "expires_at": 1766088043, "transcript": "Hello there!",
                                "data": "".join(PIECES)}


@pytest.mark.parametrize("audio", ["UklGR", ["x"], {"transcript": 5}, {"data": {"b": 1}}])
def test_a_malformed_audio_delta_is_a_format_error(audio):
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"audio": audio}, "finish_reason": None}]}
    with pytest.raises(StreamFormatError, match="not shaped like a chat.completion.chunk"):
        accumulate([chunk])
