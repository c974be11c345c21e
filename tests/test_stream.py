"""Folding streamed chunks into one completion, on the genuine OpenAI streams in tests/data."""

from __future__ import annotations

import json
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
