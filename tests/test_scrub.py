"""Cassettes hold no secret in any form a reader could decode: cut across a stream's events, written as
JSON escapes, or inside JSON text in a JSON string (a call's arguments), in responses and in requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowrunner._cli import main
from flowrunner._record import without_timing
from flowrunner._stream import accumulate, iter_events
from flowrunner.testing import Reply

KEY = "sk-CANARYKEY-0123456789abcdef"
TOKEN = "tok-CANARY-4242-very-secret"


def escaped(text: str) -> str:
    """`text` written entirely as JSON escapes: `\\u0073\\u006b...`."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


def decoded(value: Any) -> Any:
    """JSON data with every string that is itself JSON decoded too (a call's arguments, a tool's result)."""
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        return decoded(inner) if isinstance(inner, (dict, list, str)) else value
    if isinstance(value, dict):
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def readable(cassette: Path) -> str:
    """Everything a reader of the cassette could get out of it: the file, each body, JSON bodies decoded
    (and JSON inside their strings), and each stream folded into the answer it replays as."""
    text = cassette.read_text()
    seen = [text]
    for interaction in yaml.safe_load(text)["interactions"]:
        for body in (interaction["request"]["body"], interaction["response"]["body"]["string"]):
            body = body.decode() if isinstance(body, bytes) else body or ""
            seen.append(body)
            try:
                data = json.loads(body)
            except ValueError:
                data = accumulate(iter_events(body.splitlines())) if body.startswith("data:") else None
            seen.append(json.dumps(decoded(data), ensure_ascii=False))
    return "\n".join(seen)


def assert_no_secret(cassette: Path, secret: str) -> None:
    everything = readable(cassette)
    assert secret not in everything
    assert escaped(secret) not in everything and escaped(secret).upper() not in everything.upper()


def sse(*chunks: dict[str, Any] | str) -> str:
    """A stream's body: each chunk a `data:` event (a str is written as it is: escapes of its own)."""
    events = [c if isinstance(c, str) else json.dumps(c) for c in chunks]
    return "".join(f"data: {event}\n\n" for event in events) + "data: [DONE]\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


STREAMED = """
    name: streamed
    model: gpt-4o-mini
    steps:
      - id: answer
        stream: true
        messages: [{role: user, content: "Which key?"}]
"""


def record_and_replay(flow: Path, cassette: Path, base_url: str, capsys: Any) -> dict[str, Any]:
    """The run's --json record, recorded against `base_url`; the same record must come from the replay."""
    code = main(["run", str(flow), "--base-url", base_url, "--cassette", str(cassette), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    live = json.loads(out)
    code = main(["run", str(flow), "--cassette", str(cassette), "--record-mode", "none", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # The rewritten pieces still join into the (redacted) answer; only the timings differ.
    assert without_timing(json.loads(out)) == without_timing(live)
    return live  # type: ignore[no-any-return]


@pytest.mark.server
def test_a_key_cut_across_streamed_events_or_written_as_escapes_is_not_in_the_cassette(
        make_flow, chat_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    flow = make_flow(STREAMED)
    first = json.dumps(chunk({"role": "assistant", "content": ""}))
    escapes = json.dumps(chunk({"content": " and again: "})).replace("again: ", "again: " + escaped(KEY))
    body = sse(first, chunk({"content": "The key=" + KEY[:11]}), chunk({"content": KEY[11:] + " works"}),
               escapes, chunk({}, "stop"))
    assert KEY not in body and escaped(KEY) in body  # as sent: cut in two, and escaped
    chat_server.enqueue(Reply(body=body, content_type="text/event-stream"))
    cassette = tmp_path / "c.yaml"
    record = record_and_replay(flow.path, cassette, chat_server.base_url, capsys)

    assert record["outputs"]["answer"] == "The key=[redacted:OPENAI_API_KEY] works and again: [redacted:OPENAI_API_KEY]"
    assert_no_secret(cassette, KEY)
    assert KEY[11:] not in readable(cassette)  # not even the part after the cut
    recorded = yaml.safe_load(cassette.read_text())["interactions"][0]["response"]["body"]["string"]
    assert recorded.startswith(f"data: {first}\n\n")  # an event with no secret keeps its bytes


CALLS = """
    name: calls
    model: gpt-4o-mini
    inputs:
      token: {type: string, env: FLOWRUNNER_TEST_TOKEN}
    functions:
      remember:
        entry: tools:remember
        description: Remember a text
        parameters: {type: object, properties: {text: {type: string}}, required: [text]}
    steps:
      - id: answer
        stream: true
        functions: [remember]
        messages: [{role: user, content: "Please remember the code for {{ inputs.token }}"}]
"""

REMEMBER = """
    def remember(text):
        return {"remembered": text}
"""


@pytest.mark.server
def test_call_arguments_streamed_in_fragments_are_redacted_across_them(make_flow, chat_server, tmp_path, capsys,
                                                                       monkeypatch):
    from flowrunner.testing import _rules

    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)
    flow = make_flow(CALLS, tools=REMEMBER)
    cassette = tmp_path / "c.yaml"
    record = record_and_replay(flow.path, cassette, chat_server.base_url, capsys)

    # The test server's stream cut the call's arguments into fragments, none holding the whole token.
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                 for c in _rules.stream_chunks(chat_server.requests[0].body) if c["choices"]
                 and c["choices"][0]["delta"].get("tool_calls")]
    assert TOKEN in "".join(fragments) and not any(TOKEN in f for f in fragments)
    call = record["steps"][0]["rounds"][0]["calls"][0]
    assert call["arguments"] == {"text": "[redacted:FLOWRUNNER_TEST_TOKEN]"}
    assert_no_secret(cassette, TOKEN)
    assert TOKEN[-8:] not in readable(cassette)


def call_reply(arguments: str, stream: bool) -> Reply:
    """The model calling `remember` with `arguments` (raw JSON text), whole or streamed in three pieces."""
    if not stream:
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "remember", "arguments": arguments}}]}
        return Reply(body={"id": "chatcmpl-c", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [{"index": 0, "message": message, "logprobs": None,
                                        "finish_reason": "tool_calls"}]})
    third = len(arguments) // 3
    parts = [arguments[:third], arguments[third:2 * third], arguments[2 * third:]]
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "remember", "arguments": ""}}
    body = sse(chunk({"role": "assistant", "content": None}), chunk({"tool_calls": [start]}),
               *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts],
               chunk({}, "tool_calls"))
    return Reply(body=body, content_type="text/event-stream")


@pytest.mark.server
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_secret_escaped_inside_call_arguments_is_redacted_in_the_response_and_the_next_request(
        make_flow, chat_server, tmp_path, capsys, monkeypatch, stream):
    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)
    flow = make_flow(CALLS.replace("stream: true", f"stream: {str(stream).lower()}"), tools=REMEMBER)
    arguments = '{"text": "' + escaped(TOKEN) + '"}'  # JSON text with escapes of its own, inside a JSON string
    chat_server.enqueue(call_reply(arguments, stream))
    cassette = tmp_path / "c.yaml"
    record = record_and_replay(flow.path, cassette, chat_server.base_url, capsys)

    sent = chat_server.requests[1].body["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == arguments  # the call went back as the model wrote it
    assert json.loads(sent[-1]["content"]) == {"remembered": TOKEN}
    assert record["steps"][0]["rounds"][0]["calls"][0]["arguments"] == {"text": "[redacted:FLOWRUNNER_TEST_TOKEN]"}
    assert_no_secret(cassette, TOKEN)


@pytest.mark.server
def test_a_secret_written_as_json_escapes_in_a_request_and_an_answer_is_redacted(make_flow, chat_server, tmp_path,
                                                                                capsys, monkeypatch):
    secret = "tök-CANARY-4242-very-secret"  # json.dumps writes it t\u00f6k-... by default
    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", secret)
    flow = make_flow(CALLS.replace("stream: true", "stream: false"), tools="""
        import json

        def remember(text):
            return json.dumps({"remembered": text})  # JSON text, as many functions return it
    """)
    chat_server.enqueue(call_reply(json.dumps({"text": secret}), stream=False),
                        plain_answer(f"Noted: {secret}"))
    cassette = tmp_path / "c.yaml"
    record = record_and_replay(flow.path, cassette, chat_server.base_url, capsys)

    tool_message = chat_server.requests[1].body["messages"][-1]
    assert tool_message["content"] == '{"remembered": "t\\u00f6k-CANARY-4242-very-secret"}'  # an escape of its own
    assert record["steps"][0]["content"] == "Noted: [redacted:FLOWRUNNER_TEST_TOKEN]"
    call = record["steps"][0]["rounds"][0]["calls"][0]
    assert call["result"] == '{"remembered": "[redacted:FLOWRUNNER_TEST_TOKEN]"}'
    assert_no_secret(cassette, secret)
    assert json.dumps(secret)[1:-1] not in readable(cassette)


def plain_answer(text: str) -> Reply:
    """A whole answer; the server writes it with json.dumps, non-ASCII as escapes."""
    return Reply(body={"id": "chatcmpl-e", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                    "message": {"role": "assistant", "content": text, "refusal": None}}]})


@pytest.mark.parametrize("body", [
    'data: {"choices": "x"}\n\n',
    'data: {"choices": [{"index": {"a": 1}, "delta": "%s"}]}\n\n' % KEY,
    'data: {"choices": [{"delta": {"tool_calls": [{"index": [1]}, 5, "s"]}}]}\n\n',
    "data: [1, 2]\n\ndata:\n\n",
    "data: " + "[" * 100_000 + "]" * 100_000 + "\n\n",  # deeper than Python's JSON parser goes
    '{"a": %s"%s"%s}' % ("[" * 100_000, KEY, "]" * 100_000),
    'event: x\ndata: {"a":\ndata: "%s"}\n\n: a comment with %s\n\n' % (KEY, KEY),  # data over two lines
    'data: {"choices": [{"delta": {"content": "%s"}}]}\r\n\r\ndata: {"choices": [{"delta": {"content": "%s"}}]}\r\n\r\n'
    % (KEY[:9], KEY[9:]),
    b"\xff\xfe data: x " + KEY.encode(),
])
def test_an_odd_body_is_scrubbed_without_error(body):
    from flowrunner._scrub import scrub_body
    from flowrunner._secrets import register

    register(KEY, "OPENAI_API_KEY")
    scrubbed = scrub_body(body)
    text = scrubbed.decode(errors="replace") if isinstance(scrubbed, bytes) else scrubbed
    assert KEY not in text and KEY[9:] not in text


def test_interleaved_channels_cut_anywhere_join_into_their_redacted_texts():
    import random

    from flowrunner._scrub import scrub_body
    from flowrunner._secrets import redact, register

    register(KEY, "OPENAI_API_KEY")
    rng = random.Random(11)
    text, arguments = f"a {KEY} b {KEY[:5]} {KEY}", json.dumps({"x": KEY, "y": "z"})
    for _ in range(300):
        channels = []
        for whole, delta in ((text, lambda p: {"content": p}),
                             (arguments, lambda p: {"tool_calls": [{"index": 1, "function": {"arguments": p}}]})):
            cuts = sorted(rng.sample(range(1, len(whole)), rng.randint(0, 5)))
            channels.append([chunk(delta(whole[i:j])) for i, j in zip([0, *cuts], [*cuts, len(whole)])])
        events = []
        while any(channels):  # the two channels interleaved, each in its order
            events.append(rng.choice([c for c in channels if c]).pop(0))
        body = "".join(f"data: {json.dumps(e, ensure_ascii=rng.random() < 0.5)}\n\n" for e in events)
        scrubbed = scrub_body(body + "data: [DONE]\n\n")
        assert isinstance(scrubbed, str) and KEY not in scrubbed
        message = accumulate(iter_events(scrubbed.splitlines()))["choices"][0]["message"]
        assert message["content"] == redact(text)
        assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"x": "[redacted:OPENAI_API_KEY]",
                                                                                   "y": "z"}
