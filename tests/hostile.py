"""Hostile answers for tests/test_hostile_server.py: what a broken, malicious or merely unusual server
can send, generated with hypothesis, and a test server that gives each case its own answer.

A `Case` is one scripted answer (a `Reply`) with an id; the flows send the id as the user's message,
and `CaseServer` answers the first request carrying it with the case's reply (every attempt: a
retry meets the same answer), and later rounds (after a function call) with the server's rules.
So runs of many cases can share one server in any order and at any concurrency.

The answers come in families (`Case.family`), each built on genuine OpenAI shapes (the real
recordings in tests/data/real-responses/, and the spec's shapes for refusals, cut and filtered
answers and audio):
- every position of a completion, and of each chunk of a stream, given a wrong type or removed;
- JSON nested far too deep, integers of thousands of digits, a megabyte of text, lone surrogates;
- absurd rate-limit and retry headers (huge, negative, nan, non-ASCII, 10 kB long) on answers,
  429s and 503s;
- truncated bodies, bodies trickled in pieces, dropped and reset connections, wrong content types;
- refusals, answers cut at the token limit, filtered answers, audio answers, empty reasoning answers.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flowrunner.testing import ChatServer, Reply
from flowrunner.testing.server import ReceivedRequest

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
DELETE = object()  # a position's "wrong value" that removes it
PLACEHOLDER = "\u0000hostile-raw\u0000"  # swapped for raw JSON text that json.dumps cannot write


@dataclass(frozen=True)
class Case:
    """One hostile answer. `stream`: it answers the streamed flow; `expect`: the answer's kind when
    it must not pass silently (refusal, content_filter, empty_reasoning fail; length warns; audio's
    transcript is the answer)."""

    id: str
    family: str
    reply: Reply
    stream: bool
    note: str = ""
    expect: str | None = None
    transcript: str | None = field(default=None, compare=False)

    def reproducer(self, limit: int = 600) -> str:
        """The reply, short enough to read: what to enqueue on a ChatServer to see the failure again."""
        body = self.reply.body if isinstance(self.reply.body, (str, bytes)) else json.dumps(self.reply.body)
        text = body.decode("latin-1") if isinstance(body, bytes) else body
        shown = text if len(text) <= limit else f"{text[:limit // 2]}...<{len(text):,} chars>...{text[-limit // 4:]}"
        headers = {k: (v if len(v) <= 80 else f"{v[:40]}...<{len(v):,} chars>") for k, v in self.reply.headers.items()}
        extras = "".join(f", {name}={value!r}" for name, value in (
            ("headers", headers), ("content_type", self.reply.content_type), ("fault", self.reply.fault),
            ("chunk_delay", self.reply.chunk_delay)) if value)
        return (f"{self.id} [{self.family}{': ' + self.note if self.note else ''}] "
                f"{'stream ' if self.stream else ''}Reply({self.reply.status}, {shown!r}{extras})")


class CaseServer(ChatServer):
    """A ChatServer whose answer to a run's first request is the reply of the case named in it."""

    def __init__(self, cases: list[Case]) -> None:
        super().__init__()
        self.cases = {case.id: case for case in cases}

    def answer(self, request: ReceivedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages")
        if isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict):
            case = self.cases.get(str(messages[0].get("content")))
            if case is not None:
                self._record(request)
                return case.reply
        return super().answer(request)


# -- genuine shapes ----------------------------------------------------------------------------------

def _usage(completion: int = 9, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def completion(message: dict[str, Any], finish_reason: str = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat.completion as OpenAI sends it (tests/data/real-responses/02-plain-answer-ratelimit-headers.json)."""
    return {"id": "chatcmpl-DPTBnLVEU6gLtntz301fthMFXeE4C", "object": "chat.completion", "created": 1774962775,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": None,
                                                 "annotations": [], **message},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage or _usage(), "service_tier": "default", "system_fingerprint": "fp_dbaca60df0"}


TEXT = "Why did the developer go broke? Because every trace ended in a 500."
TRANSCRIPT = "It is sunny in Boston today."
TOOL_CALL = {"id": "call_1EYWDzueHEp8OsB8jJSEp7WB", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"location\": \"Boston\"}"}}
AUDIO = {"id": "audio_6772d5dbcf508190a6cdc1cc1f8d7ff0", "expires_at": 1735582699,
         "data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=", "transcript": TRANSCRIPT}

COMPLETIONS: dict[str, tuple[dict[str, Any], str | None]] = {
    "text": (completion({"content": TEXT}), None),
    "tool_call": (completion({"tool_calls": [TOOL_CALL]}, "tool_calls"), None),
    "refusal": (completion({"refusal": "I'm sorry, I can't help with that."}), "refusal"),
    "length": (completion({"content": "Why did the developer"}, "length", _usage(4)), "length"),
    "content_filter": (completion({"content": ""}, "content_filter", _usage(0)), "content_filter"),
    "audio": (completion({"audio": AUDIO}), "audio"),
    "empty_reasoning": (completion({"content": ""}, "length", _usage(64, reasoning=64)), "empty_reasoning"),
}


def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, usage: dict[str, Any] | None = None,
          ) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI streams it (06-stream-tool-call-with-usage.json); `delta`
    None is the last, usage-only chunk (`choices: []`)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {"id": "chatcmpl-BWlJBDk2xe66hjff60joVYpXi1hh4", "object": "chat.completion.chunk",
            "created": 1747148049, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
            "system_fingerprint": "fp_dbaca60df0", "choices": choices, "usage": usage,
            "obfuscation": "hAbc1"}


def _text_stream(pieces: list[str], finish: str = "stop", usage: dict[str, Any] | None = None,
                 channel: str = "content") -> list[dict[str, Any]]:
    first = {"role": "assistant", "content": "" if channel == "content" else None, "refusal": None}
    return ([chunk(first)] + [chunk({channel: piece}) for piece in pieces] + [chunk({}, finish)]
            + [chunk(None, usage=usage or _usage())])


STREAMS: dict[str, tuple[list[dict[str, Any]], str | None]] = {
    "text": (_text_stream(["Why did the ", "developer go broke? ", "Because every trace ended in a 500."]), None),
    "tool_call": ([chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                      {"index": 0, "id": TOOL_CALL["id"], "type": "function", "function": {"name": "lookup", "arguments": ""}}]}),
                   chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": "}}]}),
                   chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Boston\"}"}}]}),
                   chunk({}, "tool_calls"), chunk(None, usage=_usage())], None),
    "refusal": (_text_stream(["I'm sorry, ", "I can't help with that."], channel="refusal"), "refusal"),
    "length": (_text_stream(["Why did ", "the developer"], "length", _usage(4)), "length"),
    "content_filter": (_text_stream([], "content_filter", _usage(0)), "content_filter"),
    "audio": ([chunk({"role": "assistant", "content": None, "refusal": None}),
               chunk({"audio": {"id": AUDIO["id"], "transcript": "It is sunny "}}),
               chunk({"audio": {"transcript": "in Boston today."}}),
               chunk({"audio": {"data": AUDIO["data"], "expires_at": AUDIO["expires_at"]}}),
               chunk({}, "stop"), chunk(None, usage=_usage())], "audio"),
    "empty_reasoning": (_text_stream([], "length", _usage(64, reasoning=64)), "empty_reasoning"),
}


def sse(events: list[Any], done: bool = True, sep: str = "\n") -> str:
    """A stream body: each event as `data: JSON` (a str event is written as it is)."""
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}{sep}{sep}" for e in events]
    return "".join(lines) + (f"data: [DONE]{sep}{sep}" if done else "")


# -- positions and wrong values ----------------------------------------------------------------------

Path = tuple[Any, ...]


def positions(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every node of JSON data, the root first: the keys of mappings, the indexes of lists."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from positions(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from positions(item, prefix + (index,))


def put(value: Any, path: Path, new: Any) -> Any:
    """A copy of `value` with the node at `path` replaced by `new` (removed for DELETE)."""
    if not path:
        return None if new is DELETE else copy.deepcopy(new)
    result = copy.deepcopy(value)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(new)
    return result


SURROGATES = ["\ud800", "hel\ud800lo", "\udfff", "a\udbff\udbffb", "\udc80\udcff"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**19, max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([math.nan, math.inf, -math.inf]),
    st.text(max_size=12), st.sampled_from(SURROGATES + ["", "null", "[DONE]", "{", "\x00", "\u202e", "\r\n\r\n"]),
)
wrong_values = st.one_of(
    scalars, st.just(DELETE), st.just([]), st.just({}),
    st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)


def dumps(value: Any) -> str:
    """JSON as a hostile server might write it: NaN and Infinity allowed, surrogates as \\u escapes."""
    return json.dumps(value)


# -- raw (deep, huge) JSON ----------------------------------------------------------------------------

def deep(depth: int, kind: str = "list") -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


RAW_VALUES = {
    "deep list 100,000": deep(100_000),
    "deep object 50,000": deep(50_000, "object"),
    "integer of 5,000 digits": "9" * 5_000,
    "negative integer of 20,000 digits": "-" + "1" * 20_000,
    "float of 400 digits": "1" + "0" * 400 + ".5",
    "exponent 1e999": "1e999",
}
RAW_TEXTS = {  # as strings: text the engine parses (arguments, content read as JSON)
    "deep JSON text 100,000": deep(100_000),
    "deep JSON text 950": '{"location": ' + deep(950) + "}",
    "integer text of 5,000 digits": "9" * 5_000,
    "a megabyte of text": "x" * 1_000_000,
    "text with lone surrogates": "hel\ud800lo \udfff wor\udbffld",
}


def with_raw(value: Any, path: Path, raw: str) -> str:
    """`value` as JSON text with the node at `path` replaced by the JSON text `raw`."""
    return dumps(put(value, path, PLACEHOLDER)).replace(dumps(PLACEHOLDER), raw)


# -- headers -------------------------------------------------------------------------------------------

HEADER_NAMES = [f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset")
                for kind in ("requests", "tokens")] + ["retry-after", "retry-after-ms", "openai-processing-ms",
                                                       "x-request-id"]


def _wire(text: str) -> str:
    """Non-ASCII text as its UTF-8 bytes on the wire (the server writes header values as latin-1)."""
    return text.encode("utf-8").decode("latin-1")


absurd_header_values = st.one_of(
    st.integers(20, 400).map(lambda n: "9" * n),
    st.integers(20, 400).map(lambda n: "9" * n + st_unit(n)),
    st.sampled_from(["-1", "-5", "-5s", "-1ms", "-999999999", "nan", "NaN", "-nan", "inf", "-inf", "Infinity",
                     "1e999", "1e308", "1e-999", "", " ", "0x10", "5 s", "1h1h1h", "9999999999999h", "1.5.5s",
                     "s", "ms", "0", "00000000000000000000001", "+5", "\t5\t"]),
    st.sampled_from(["²", "³s", "¹⁰", "٣", "١٠s", "１０", "５ms", "5秒", "∞", "—1", "ⅷ"]).map(_wire),
    st.sampled_from(["²", "³", "¼", "½s", "\xa0", "é"]),  # latin-1 characters, sent as one byte each
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=8),
    st.sampled_from(["9" * 10_000, "x" * 10_000, "1" + "0" * 9_999 + "s"]),
)


def st_unit(n: int) -> str:
    return ("s", "ms", "m", "h")[n % 4]


headers_strategy = st.dictionaries(st.sampled_from(HEADER_NAMES), absurd_header_values, min_size=1, max_size=6)


# -- the cases -----------------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]


class _Builder:
    def __init__(self) -> None:
        self.cases: list[Case] = []

    def add(self, family: str, reply: Reply, stream: bool, note: str = "", expect: str | None = None,
            transcript: str | None = None) -> None:
        self.cases.append(Case(f"case-{len(self.cases):04d}", family, reply, stream, note, expect, transcript))


def json_reply(value: Any) -> Reply:
    """A 200 whose body is `value` as JSON text (nothing at all for a removed root)."""
    return Reply(200, "" if value is None else dumps(value), content_type=JSON)


def _stream_reply(events: list[Any], done: bool = True, **kwargs: Any) -> Reply:
    return Reply(200, sse(events, done), content_type=SSE, **kwargs)


def build_cases(draw: Draw) -> list[Case]:
    """Every family of hostile answers; the wrong values, headers and pieces are drawn by hypothesis."""
    b = _Builder()
    # The kinds of answer that must not pass silently, as they come, plain and streamed.
    for kind, (body, expect) in COMPLETIONS.items():
        b.add("kind", Reply(200, body), False, kind, expect, TRANSCRIPT if kind == "audio" else None)
    for kind, (events, expect) in STREAMS.items():
        b.add("kind", _stream_reply(events), True, kind, expect, TRANSCRIPT if kind == "audio" else None)
    # Every position of a completion and of each stream chunk: a wrong type, or gone.
    for kind in ("text", "tool_call"):
        body = COMPLETIONS[kind][0]
        for path in positions(body):
            value = draw(wrong_values)
            b.add("completion-position", json_reply(put(body, path, value)), False,
                  f"{kind} at {list(path)} = {_show(value)}")
        events = STREAMS[kind][0]
        shapes: set[tuple[Path, ...]] = set()
        for index, event in enumerate(events):
            shape = tuple(positions(event))
            if shape in shapes:
                continue  # the same positions as an earlier chunk's (the text's middle pieces)
            shapes.add(shape)
            for path in shape:
                value = draw(wrong_values)
                mangled = list(events)
                mangled[index] = put(event, path, value)
                b.add("chunk-position", _stream_reply([e for e in mangled if e is not None]), True,
                      f"{kind} chunk {index} at {list(path)} = {_show(value)}")
    for kind in ("refusal", "length", "content_filter", "audio", "empty_reasoning"):  # one position each
        body = COMPLETIONS[kind][0]
        path = draw(st.sampled_from(list(positions(body))))
        value = draw(wrong_values)
        b.add("completion-position", json_reply(put(body, path, value)), False,
              f"{kind} at {list(path)} = {_show(value)}")
        events = STREAMS[kind][0]
        index = draw(st.integers(0, len(events) - 1))
        path = draw(st.sampled_from(list(positions(events[index]))))
        value = draw(wrong_values)
        mangled = list(events)
        mangled[index] = put(events[index], path, value)
        b.add("chunk-position", _stream_reply([e for e in mangled if e is not None]), True,
              f"{kind} chunk {index} at {list(path)} = {_show(value)}")
    for fixed in (_deep_and_huge, _surrogates, _stream_shapes):
        for case in _fixed(fixed):
            b.add(case.family, case.reply, case.stream, case.note, case.expect, case.transcript)
    _generated_streams(b, draw)
    _headers(b, draw)
    _bodies(b, draw)
    return b.cases


@functools.cache
def _fixed(family: Callable[[_Builder], None]) -> tuple[Case, ...]:
    """The cases a family builds without drawing anything, built once (some take a while)."""
    b = _Builder()
    family(b)
    return tuple(b.cases)


def _show(value: Any) -> str:
    text = "(removed)" if value is DELETE else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _deep_and_huge(b: _Builder) -> None:
    text, tool = COMPLETIONS["text"][0], COMPLETIONS["tool_call"][0]
    message = ("choices", 0, "message")
    for name, raw in RAW_VALUES.items():
        for where, body, path in (("the body", text, ()), ("usage", text, ("usage",)),
                                  ("message.content", text, message + ("content",)),
                                  ("tool arguments", tool, message + ("tool_calls", 0, "function", "arguments"))):
            b.add("deep-huge", Reply(200, with_raw(body, path, raw), content_type=JSON), False, f"{name} as {where}")
        event = with_raw(STREAMS["text"][0][1], ("choices", 0, "delta", "content"), raw)
        b.add("deep-huge", _stream_reply([STREAMS["text"][0][0], event, *STREAMS["text"][0][2:]]), True,
              f"{name} as a chunk's delta.content")
        b.add("deep-huge", _stream_reply([STREAMS["text"][0][0], raw]), True, f"{name} as a whole event")
    for name, value in RAW_TEXTS.items():
        b.add("deep-huge", Reply(200, put(text, message + ("content",), value)), False, f"content: {name}")
        b.add("deep-huge", Reply(200, put(tool, message + ("tool_calls", 0, "function", "arguments"), value)),
              False, f"tool arguments: {name}")
        events = list(STREAMS["text"][0])
        events[1] = put(events[1], ("choices", 0, "delta", "content"), value)
        b.add("deep-huge", _stream_reply(events), True, f"streamed content: {name}")
        events = list(STREAMS["tool_call"][0])
        events[1] = put(events[1], ("choices", 0, "delta", "tool_calls", 0, "function", "arguments"), value)
        events[2] = put(events[2], ("choices", 0, "delta", "tool_calls", 0, "function", "arguments"), "")
        b.add("deep-huge", _stream_reply(events), True, f"streamed tool arguments: {name}")
    b.add("deep-huge", Reply(200, put(tool, message + ("tool_calls",), [TOOL_CALL] * 500)), False,
          "500 tool calls")


def _surrogates(b: _Builder) -> None:
    text, tool = COMPLETIONS["text"][0], COMPLETIONS["tool_call"][0]
    message = ("choices", 0, "message")
    for where, body, path in (("content", text, message + ("content",)), ("id", text, ("id",)),
                              ("model", text, ("model",)), ("finish_reason", text, ("choices", 0, "finish_reason")),
                              ("tool name", tool, message + ("tool_calls", 0, "function", "name")),
                              ("tool arguments", tool, message + ("tool_calls", 0, "function", "arguments")),
                              ("tool argument value", tool, message + ("tool_calls", 0, "function", "arguments")),
                              ("tool call id", tool, message + ("tool_calls", 0, "id")),
                              ("refusal", COMPLETIONS["refusal"][0], message + ("refusal",)),
                              ("usage key", text, ("usage", "\ud800"))):
        value: Any = "hel\ud800lo"
        if where == "tool argument value":
            value = json.dumps({"location": "Bos\ud800ton"})
        elif where == "usage key":
            value = 5
        b.add("surrogate", Reply(200, put(body, path, value)), False, where)
        b.add("surrogate", Reply(200, dumps(put(body, path, value)).replace("\\ud800", "\\udbff"), content_type=JSON),
              False, f"{where} (high surrogate)")
    b.add("surrogate", Reply(400, {"error": {"message": "bad \ud800 request", "type": "invalid_request_error",
                                             "param": None, "code": "x\udfff"}}), False, "error message")
    events = list(STREAMS["text"][0])
    events[1] = put(events[1], ("choices", 0, "delta", "content"), "hel\ud800")
    events[2] = put(events[2], ("choices", 0, "delta", "content"), "\udc00lo")  # a pair split across chunks
    b.add("surrogate", _stream_reply(events), True, "a surrogate pair split across chunks")
    b.add("surrogate", Reply(200, b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", '
                                  b'"content": "\xed\xa0\x80 \xff\xfe"}, "finish_reason": "stop"}]}', content_type=JSON),
          False, "content as invalid UTF-8 bytes (an encoded surrogate, 0xff)")


def _stream_shapes(b: _Builder) -> None:
    text = STREAMS["text"][0]
    shapes: dict[str, Reply] = {
        "choices is 5": _stream_reply([{"choices": 5}]),
        "a number event": _stream_reply([5]),
        "a list event": _stream_reply([text[0], [text[1]]]),
        "a string event": _stream_reply([text[0], '"text"']),
        "not JSON": _stream_reply([text[0], "{not json"]),
        "no [DONE]": _stream_reply(text, done=False),
        "only [DONE]": _stream_reply([]),
        "no events at all": Reply(200, "", content_type=SSE),
        "comments only": Reply(200, ": keep-alive\n\n" * 50, content_type=SSE),
        "CRLF line ends": Reply(200, sse(text, sep="\r\n"), content_type=SSE),
        "CR line ends": Reply(200, sse(text, sep="\r"), content_type=SSE),
        "event and id fields": Reply(200, "".join(f"event: message\nid: {n}\nretry: -5\ndata: {json.dumps(e)}\n\n"
                                                  for n, e in enumerate(text)) + "data: [DONE]\n\n", content_type=SSE),
        "a data line split in two": Reply(200, "data: " + json.dumps(text[0])[:20] + "\ndata: "
                                          + json.dumps(text[0])[20:] + "\n\n" + sse(text[1:]), content_type=SSE),
        "an error event": _stream_reply([text[0], {"error": {"message": "overloaded", "type": "server_error"}}]),
        "an error event of the wrong shape": _stream_reply([text[0], {"error": 5}]),
        "a megabyte event": _stream_reply([text[0], put(text[1], ("choices", 0, "delta", "content"), "y" * 1_000_000)]),
        "a megabyte line without an end": Reply(200, "data: " + "z" * 1_000_000, content_type=SSE),
        "10,000 tiny events": _stream_reply([text[0]] + [put(text[1], ("choices", 0, "delta", "content"), "a")] * 10_000),
        "choices index 7 only": _stream_reply([put(c, ("choices", 0, "index"), 7) if c["choices"] else c for c in text]),
        "tool call index -1, 10**30": _stream_reply([put(c, ("choices", 0, "delta", "tool_calls", 0, "index"), i)
                                                     for c, i in zip(STREAMS["tool_call"][0][:2], (-1, 10**30))]
                                                    + STREAMS["tool_call"][0][3:]),
        "tool call index a string": _stream_reply([put(STREAMS["tool_call"][0][0],
                                                       ("choices", 0, "delta", "tool_calls", 0, "index"), "0")]
                                                  + STREAMS["tool_call"][0][1:]),
        "stream served as JSON": Reply(200, COMPLETIONS["text"][0]),
        "stream served as HTML": Reply(200, "<html><title>Portal</title></html>", content_type="text/html"),
        "stream body as JSON content type": Reply(200, sse(text), content_type=JSON),
    }
    for note, reply in shapes.items():
        b.add("stream-shape", reply, True, note)


def _generated_streams(b: _Builder, draw: Draw) -> None:
    """Streams of generated lines: chunks, wrong types and junk lines in any order."""
    text = STREAMS["text"][0]
    junk = st.one_of(st.sampled_from(text).map(dumps), wrong_values.filter(lambda v: v is not DELETE).map(dumps),
                     st.sampled_from(["", ":", "data:", "data: [DONE]", "data: {", "event: x", "\x00", "data: \ud800"]))
    for _ in range(6):
        lines = draw(st.lists(junk, min_size=1, max_size=8))
        body = "".join((line if line.startswith(("data", "event", ":", "\x00")) or line == "" else f"data: {line}")
                       + "\n\n" for line in lines)
        b.add("stream-shape", Reply(200, body, content_type=SSE), True, "generated lines")


def _headers(b: _Builder, draw: Draw) -> None:
    from flowrunner.testing import faults

    for _ in range(8):
        headers = draw(headers_strategy)
        b.add("headers", replace(faults.completion(TEXT), headers=headers), False, "on a 200")
    for _ in range(4):
        headers = draw(headers_strategy)
        b.add("headers", _stream_reply(STREAMS["text"][0], headers=headers), True, "on a streamed 200")
    for _ in range(6):
        headers = draw(headers_strategy)
        base = faults.rate_limited() if draw(st.booleans()) else faults.overloaded()
        b.add("headers", replace(base, headers=headers), draw(st.booleans()), f"on a {base.status}")
    b.add("headers", replace(faults.rate_limited(), headers={
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9" * 400 + "s"}), False,
        "a 429 asking to wait 400 digits of seconds")
    b.add("headers", replace(faults.completion(TEXT), headers={
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9" * 400 + "s"}), False,
        "a 200 saying the budget resets in 400 digits of seconds")
    b.add("headers", replace(faults.completion(TEXT), headers={
        "x-ratelimit-limit-requests": "²", "x-ratelimit-remaining-requests": "²",
        "x-ratelimit-reset-requests": "1s"}), False, "superscript digits")


def _bodies(b: _Builder, draw: Draw) -> None:
    from flowrunner.testing import faults

    for kind in ("text", "tool_call", "refusal"):
        b.add("body", Reply(200, COMPLETIONS[kind][0], fault="truncate"), False, f"{kind} truncated")
        b.add("body", _stream_reply(STREAMS[kind][0], fault="truncate"), True, f"{kind} stream truncated")
        b.add("body", _stream_reply(STREAMS[kind][0], fault="truncate", chunk_delay=0.005), True,
              f"{kind} paced stream cut mid-event")
        b.add("body", _stream_reply(STREAMS[kind][0], chunk_delay=draw(st.sampled_from([0.001, 0.01, 0.03]))), True,
              f"{kind} stream trickled")
        # A JSON body in pieces: blank lines (JSON whitespace) are where the paced server cuts.
        pieces = json.dumps(COMPLETIONS[kind][0], separators=(",\n\n", ":\n\n"))
        b.add("body", Reply(200, pieces, content_type=JSON, chunk_delay=0.002), False, f"{kind} body trickled")
    for note, reply in {"dropped": faults.dropped(), "reset": faults.connection_reset(),
                        "empty 200": Reply(200, "", content_type=JSON),
                        "HTML 200": Reply(200, "<html><body>captive portal</body></html>", content_type="text/html"),
                        "bogus charset": Reply(200, json.dumps(COMPLETIONS["text"][0]),
                                               content_type="application/json; charset=bogus-8"),
                        "UTF-16 body": Reply(200, json.dumps(COMPLETIONS["text"][0]).encode("utf-16"),
                                             content_type="application/json; charset=utf-16"),
                        "gzip claimed, not gzip": Reply(200, COMPLETIONS["text"][0], headers={"content-encoding": "gzip"}),
                        "502 HTML": faults.bad_gateway_html(),
                        "204 no content": Reply(204, b"", content_type=JSON),
                        "599 status": Reply(599, {"error": {"message": "odd"}}),
                        "100 KB error message": Reply(500, {"error": {"message": "e" * 100_000, "type": "server_error"}}),
                        "deep error body": Reply(400, deep(100_000), content_type=JSON),
                        "error body a list": Reply(400, [{"error": "x"}]),
                        }.items():
        b.add("body", reply, False, note)
        b.add("body", reply, True, note + " (streamed step)")
    for _ in range(6):
        body = draw(st.fixed_dictionaries({"error": wrong_values.filter(lambda v: v is not DELETE)}))
        status = draw(st.sampled_from([400, 404, 409, 422, 500, 503]))
        b.add("body", Reply(status, body), draw(st.booleans()), f"error body at {status}")


# -- generating ----------------------------------------------------------------------------------------

def generate(examples: int = 1) -> list[Case]:
    """The cases of `examples` hypothesis examples (derandomized: the same cases on every run), their
    ids renumbered. The first example hypothesis makes is its simplest (null at every position), so
    it is made and dropped: the values drawn afterwards are varied."""
    found: list[list[Case]] = []

    @settings(max_examples=examples + 1, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        found.append(build_cases(data.draw))

    collect()
    seen: set[str] = set()
    unique = []
    for case in [case for example in found[-examples:] for case in example]:
        key = case.reproducer(limit=10**9) + repr(case.reply.body)
        if key not in seen:
            seen.add(key)
            unique.append(case)
    return [replace(case, id=f"case-{n:04d}") for n, case in enumerate(unique)]
