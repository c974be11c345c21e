"""The OpenAI-compatible test server: its schema, its rules, its HTTP behaviour, and the real SDK on it."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from flowrunner._resources import load_json
from flowrunner.testing import ChatServer, Reply
from flowrunner.testing import _rules, _spec

REAL = Path(__file__).resolve().parent / "data" / "real-responses"
REAL_FILES = sorted(REAL.glob("*.json"))

# The two tools of the 2023 function-calling tutorial flowrunner started from.
WEATHER = {"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
FOO = {"type": "function", "function": {
    "name": "get_foo", "description": "test",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "foo": {"type": "string"}},
                   "required": ["location", "foo"]}}}
TOOLS = [WEATHER, FOO]
WEATHER_RESULT = {"location": "Boston", "temperature": "72", "unit": "fahrenheit",
                  "forecast": ["sunny", "windy"]}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def ask(text: str, **options: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": user(text), **options}


def post(server: ChatServer, body: Any, path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None, method: str = "POST",
         ) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange: status, lower-cased headers, body bytes."""
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=data,
                     headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def completion(server: ChatServer, body: dict[str, Any]) -> dict[str, Any]:
    """A rules answer over raw HTTP, checked against OpenAI's response schema."""
    status, headers, raw = post(server, body)
    assert status == 200, raw
    assert headers["content-type"] == "application/json"
    answer = json.loads(raw)
    assert _spec.response_errors(answer) == []
    return answer


def api_error(raw: bytes) -> dict[str, Any]:
    """The inner error of an error body, after checking it against OpenAI's ErrorResponse."""
    body = json.loads(raw)
    assert _spec.error_errors(body) == []
    return body["error"]


@pytest.fixture
def client(chat_server: ChatServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=chat_server.base_url, api_key="test", max_retries=0) as sdk:
        yield sdk


# -- the schema file ----------------------------------------------------------------------------

def _walk(node: Any, in_names: bool = False) -> Iterator[tuple[str, Any, bool]]:
    """(key, value, key-is-a-name) for every key in the document."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key, value, in_names
            yield from _walk(value, in_names=key in ("properties", "schemas", "paths", "responses"))


def test_spec_is_stripped_of_docs_but_keeps_every_reference() -> None:
    spec = load_json("openai/chat-completions.openapi.json")
    keys = list(_walk(spec))
    assert not [k for k, v, name in keys if not name and k in ("example", "examples", "nullable")]
    assert not [k for k, v, name in keys if k.startswith("x-")]
    string_docs = [k for k, v, name in keys if not name and k == "description" and isinstance(v, str)]
    assert len(string_docs) == 2  # the two Response Objects, which OpenAPI requires to have one
    components = spec["components"]
    refs = {v for k, v, _ in keys if k == "$ref"}  # all of the form #/components/<kind>/<name>
    assert all(components[r.split("/")[2]].get(r.split("/")[3]) for r in refs)
    # `description` the property (of a function object) is data, not documentation
    function = components["schemas"]["FunctionObject"]["properties"]
    assert function["description"] == {"type": "string"}
    assert "/chat/completions" in spec["paths"]


def _real_problems(path: Path) -> set[str]:
    recorded = json.loads(path.read_text(encoding="utf-8"))
    found = {f"request: {e}" for e in _spec.request_errors(recorded["request"])}
    body = recorded["body"]
    if isinstance(body, str):
        for event in body.split("\n\n"):
            if event.strip() and event.strip() != "data: [DONE]":
                found |= {f"chunk: {e}" for e in _spec.chunk_errors(json.loads(event[6:]))}
    elif recorded["status"] == 200:
        found |= {f"response: {e}" for e in _spec.response_errors(body)}
    else:
        found |= {f"error: {e}" for e in _spec.error_errors(body)}
    return found


def test_spec_accepts_real_responses_except_known_deviations() -> None:
    """Real traffic meets the spec, save where OpenAI's own servers do not follow it."""
    null_fingerprint = "Invalid type for 'system_fingerprint': expected string, but got null instead."
    no_logprobs = "response: Missing required parameter: 'choices[0].logprobs'."
    expected = {
        "02-plain-answer-ratelimit-headers.json": {f"response: {null_fingerprint}"},
        "04-parallel-tool-calls.json": {f"response: {null_fingerprint}"},
        # 2023: before `logprobs` and `refusal` existed
        "05-legacy-function-call.json": {
            "response: Missing required parameter: 'choices[0].logprobs'.",
            "response: Missing required parameter: 'choices[0].message.refusal'."},
        "07-stream-parallel-tool-calls.json": {f"chunk: {null_fingerprint}"},
        # 2025: a reasoning model's and an audio model's answers leave `logprobs` out
        "13-reasoning-empty.json": {f"response: {null_fingerprint}", no_logprobs},
        "14-stream-reasoning-empty.json": {f"chunk: {null_fingerprint}"},
        "15-audio-answer.json": {no_logprobs},
    }
    assert len(REAL_FILES) == 17
    assert {p.name: _real_problems(p) for p in REAL_FILES} == {
        p.name: expected.get(p.name, set()) for p in REAL_FILES}


@pytest.mark.parametrize(("body", "message", "param"), [
    ({"model": "m"}, "Missing required parameter: 'messages'.", "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]},
     "Invalid value for 'messages[0].role': 'robot'. Supported values are: 'developer', "
     "'system', 'user', 'assistant', 'tool', 'function'.", "messages[0].role"),
    (ask("x", temperature="hot"),
     "Invalid type for 'temperature': expected number or null, but got string instead.",
     "temperature"),
    ({"model": "m", "messages": [{"role": "user"}]},
     "Missing required parameter: 'messages[0].content'.", "messages[0].content"),
    ({"model": "m", "messages": [{"role": "tool", "content": "72"}]},
     "Missing required parameter: 'messages[0].tool_call_id'.", "messages[0].tool_call_id"),
    (ask("x", tools=[{"type": "function", "function": {}}]),
     "Missing required parameter: 'tools[0].function.name'.", "tools[0].function.name"),
    (ask("x", n=0), "Invalid value for 'n': 0 is less than the minimum of 1.", "n"),
    (ask("x", max_token=5), "Unrecognized request argument supplied: max_token", None),
    ([ask("x")], "Invalid type for the request body: expected object, but got array instead.", None),
])
def test_request_problems_are_worded_like_openai(body: Any, message: str, param: str | None) -> None:
    assert _spec.request_problems(body)[0] == (message, param)


def test_valid_requests_have_no_problems() -> None:
    assert _spec.request_errors(ask("Hi", tools=TOOLS, stream=True,
                                     stream_options={"include_usage": True})) == []
    for path in REAL_FILES:
        assert _spec.request_errors(json.loads(path.read_text())["request"]) == []


# -- the rules, through HTTP ------------------------------------------------------------------

@pytest.mark.server
def test_weather_question_calls_only_the_weather_tool(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=user("What's the weather like in Boston?"), tools=TOOLS)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == {"location": "Boston"}
    assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)


@pytest.mark.server
def test_two_places_make_parallel_calls(chat_server: ChatServer) -> None:
    body = ask("What's the weather like in San Francisco and Tokyo?", tools=TOOLS)
    calls = completion(chat_server, body)["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"location": "San Francisco"}, {"location": "Tokyo"}]
    assert len({c["id"] for c in calls}) == 2
    single = completion(chat_server, {**body, "parallel_tool_calls": False})
    assert len(single["choices"][0]["message"]["tool_calls"]) == 1


@pytest.mark.server
def test_arguments_take_enum_values_and_numbers(chat_server: ChatServer) -> None:
    multiply = {"type": "function", "function": {
        "name": "multiply", "description": "Multiply two numbers",
        "parameters": {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}}}}}
    answer = completion(chat_server, ask("Multiply 1231 by 2331", tools=[multiply]))
    call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
    assert json.loads(call["arguments"]) == {"a": 1231, "b": 2331}
    answer = completion(chat_server, ask("Current weather near Oslo, fahrenheit please",
                                         tools=TOOLS, parallel_tool_calls=False))
    call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
    assert json.loads(call["arguments"]) == {"location": "Oslo", "unit": "fahrenheit"}


@pytest.mark.server
@pytest.mark.parametrize(("choice", "called"), [
    ("none", None),
    ("required", "get_current_weather"),  # nothing matches "Good morning": the first tool
    ({"type": "function", "function": {"name": "get_foo"}}, "get_foo"),
])
def test_tool_choice(chat_server: ChatServer, choice: Any, called: str | None) -> None:
    message = completion(chat_server, ask("Good morning", tools=TOOLS, tool_choice=choice)
                         )["choices"][0]["message"]
    names = [c["function"]["name"] for c in message.get("tool_calls") or []]
    assert names == ([called] if called else [])
    if called:  # forced, so the required string properties get the whole message
        assert json.loads(message["tool_calls"][0]["function"]["arguments"])["location"] == \
            "Good morning"


@pytest.mark.server
def test_forcing_an_unknown_tool_is_a_bad_request(chat_server: ChatServer) -> None:
    choice = {"type": "function", "function": {"name": "nope"}}
    status, _, raw = post(chat_server, ask("Hi", tools=TOOLS, tool_choice=choice))
    assert status == 400
    assert api_error(raw)["param"] == "tool_choice"


@pytest.mark.server
def test_answer_after_tool_results_repeats_every_value(client: openai.OpenAI) -> None:
    messages = [*user("What's the weather like in Boston?"),
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_current_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(WEATHER_RESULT)}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == (
        "get_current_weather: location Boston, temperature 72, unit fahrenheit, "
        "forecast sunny and windy.")


@pytest.mark.server
def test_legacy_functions_get_one_function_call(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=user("What's the weather in Boston and Tokyo?"),
        functions=[WEATHER["function"], FOO["function"]])
    choice = answer.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_current_weather"
    assert json.loads(choice.message.function_call.arguments) == {"location": "Boston"}
    messages = [*user("Weather?"), {"role": "function", "name": "get_current_weather",
                                    "content": "Sunny and 72"}]
    answer = client.chat.completions.create(model="gpt-3.5-turbo", messages=messages)
    assert answer.choices[0].message.content == 'get_current_weather: "Sunny and 72".'


@pytest.mark.server
@pytest.mark.parametrize(("text", "expected"), [
    ("Hello! How are you doing?", "Hello! How can I help you today?"),
    ("Summarize this: The meeting moved to Tuesday. Bring the slides.",
     "The meeting moved to Tuesday."),
    ("Please summarise\n" + "word " * 40 + ".", " ".join(["word"] * 30)),
    ("Translate 'Good morning' into Korean", "[ko] Good morning"),
    ("Translate to French: I want to go home.", "[fr] I want to go home."),
    ("Translate 'hi' to Klingon", "[Klingon] hi"),
    ("What is 2 + 2?", "You said: What is 2 + 2?"),
])
def test_plain_answers(chat_server: ChatServer, text: str, expected: str) -> None:
    choice = completion(chat_server, ask(text, tools=TOOLS))["choices"][0]
    assert choice["message"]["content"] == expected
    assert choice["finish_reason"] == "stop"


@pytest.mark.server
@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_cuts_the_answer(chat_server: ChatServer, limit: str) -> None:
    answer = completion(chat_server, ask("one two three four", **{limit: 4}))
    assert answer["choices"][0]["message"]["content"] == "You said: one two"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 4


@pytest.mark.server
def test_answer_object_usage_and_determinism(chat_server: ChatServer) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."},
                                            *user("Hi there")]}
    first, second = completion(chat_server, body), completion(chat_server, body)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{29}", first["id"])
    assert first["id"] == second["id"]
    assert first["model"] == "gpt-4o"
    assert first["system_fingerprint"] == "fp_flowrunner"
    assert first["choices"][0]["message"]["annotations"] == []
    assert first["usage"]["prompt_tokens"] == 4
    assert first["usage"]["completion_tokens"] == 7
    assert first["usage"]["total_tokens"] == 11
    assert completion(chat_server, ask("Hi you"))["id"] != first["id"]


# -- streaming --------------------------------------------------------------------------------

@pytest.mark.server
@pytest.mark.parametrize("text", ["Tell me about the seven seas and their many ships",
                                  "What's the weather like in Boston and Paris?"])
def test_stream_reassembles_to_the_plain_answer(client: openai.OpenAI, text: str) -> None:
    plain = client.chat.completions.create(model="m", messages=user(text), tools=TOOLS)
    stream = client.chat.completions.create(model="m", messages=user(text), tools=TOOLS,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    for chunk in chunks:
        assert _spec.chunk_errors(chunk.to_dict()) == []
    assert len({c.id for c in chunks}) == 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    message = plain.choices[0].message
    assert content == (message.content or "")
    assert list(calls.values()) == [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []]
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == [plain.choices[0].finish_reason]
    *body, last = chunks
    assert last.choices == [] and last.usage == plain.usage
    assert all(c.usage is None for c in body)


@pytest.mark.server
def test_stream_is_server_sent_events(chat_server: ChatServer) -> None:
    status, headers, raw = post(chat_server, ask("Hi", stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = raw.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all("usage" not in c for c in chunks)  # include_usage was not asked for


def test_legacy_stream_sends_function_call_deltas() -> None:
    chunks = _rules.stream_chunks(ask("Weather in Rome?", functions=[WEATHER["function"]],
                                      stream=True))
    assert all(_spec.chunk_errors(c) == [] for c in chunks)
    deltas = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    arguments = "".join(d["arguments"] for d in deltas if d)
    assert json.loads(arguments) == {"location": "Rome"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.server
@pytest.mark.parametrize(("body", "param"), [
    ({"model": "gpt-4o"}, "messages"),
    ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    (ask("x", temperature="hot"), "temperature"),
    (b"{not json", None),
])
def test_invalid_requests_get_400_and_keep_the_queue(chat_server: ChatServer, body: Any,
                                                    param: str | None) -> None:
    chat_server.enqueue(Reply(body={"queued": True}))
    status, headers, raw = post(chat_server, body)
    assert status == 400
    assert headers["content-type"] == "application/json; charset=utf-8"
    error = api_error(raw)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert json.loads(post(chat_server, ask("x"))[2]) == {"queued": True}


@pytest.mark.server
def test_sdk_raises_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=user("x"), temperature="hot")
    assert caught.value.status_code == 400
    assert "temperature" in caught.value.message


@pytest.mark.server
def test_other_paths_and_methods(chat_server: ChatServer) -> None:
    status, _, raw = post(chat_server, ask("x"), path="/v1/completions")
    assert status == 404 and api_error(raw)["message"] == "Invalid URL (POST /v1/completions)"
    status, headers, raw = post(chat_server, None, method="GET")
    assert status == 405 and headers["allow"] == "POST"
    api_error(raw)
    with urllib.request.urlopen(chat_server.base_url + "/models", timeout=5) as response:
        assert json.load(response)["data"][0]["id"] == "flowrunner-rules"


@pytest.mark.server
def test_api_key_is_checked_like_openai() -> None:
    with ChatServer(api_key="sk-right-key-123456") as server:
        status, headers, raw = post(server, ask("x"))
        assert status == 401
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["x-request-id"]
        assert api_error(raw)["code"] == "invalid_api_key"
        with openai.OpenAI(base_url=server.base_url, api_key="<not-a-real-key>",
                           max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError) as caught:
                wrong.chat.completions.create(model="m", messages=user("x"))
        assert caught.value.body == {
            "message": "Incorrect API key provided: <not-a-r****key>. You can find your API key "
                       "at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        with openai.OpenAI(base_url=server.base_url, api_key="sk-right-key-123456",
                           max_retries=0) as right:
            assert right.chat.completions.create(model="m", messages=user("Hi")).choices


@pytest.mark.server
def test_invalid_rule_output_is_a_500_naming_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rules, "complete", lambda request: {"object": "chat.completion"})
    with ChatServer() as server:
        status, _, raw = post(server, ask("Hi"))
        assert status == 500
        error = api_error(raw)
        assert error["type"] == "server_error" and "'greeting'" in error["message"]
    with ChatServer(validate_responses=False) as server:
        assert json.loads(post(server, ask("Hi"))[2]) == {"object": "chat.completion"}


# -- scripted replies -------------------------------------------------------------------------

@pytest.mark.server
def test_scripted_replies_come_first_in_order(chat_server: ChatServer,
                                              client: openai.OpenAI) -> None:
    limited = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                         "code": "rate_limit_exceeded"}}
    chat_server.enqueue(Reply(status=429, body=limited, headers={"retry-after-ms": "20"}),
                        Reply(status=503, body="<html>overloaded</html>", content_type="text/html"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=user("Hi"))
    assert caught.value.response.headers["retry-after-ms"] == "20"
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(model="m", messages=user("Hi"))
    assert overloaded.value.response.text == "<html>overloaded</html>"
    answer = client.chat.completions.create(model="m", messages=user("Hi"))
    assert answer.choices[0].message.content == "Hello! How can I help you today?"


@pytest.mark.server
@pytest.mark.parametrize("path", REAL_FILES, ids=[p.stem for p in REAL_FILES])
def test_recorded_replies_are_served_as_recorded(chat_server: ChatServer, client: openai.OpenAI,
                                                 path: Path) -> None:
    recorded = json.loads(path.read_text(encoding="utf-8"))
    chat_server.enqueue(Reply.from_recorded(path), Reply.from_recorded(path))
    status, headers, raw = post(chat_server, recorded["request"])
    assert status == recorded["status"]
    assert {k: headers[k] for k in recorded["headers"]} == recorded["headers"]
    body = recorded["body"]
    assert (raw.decode() if isinstance(body, str) else json.loads(raw)) == body
    create = client.chat.completions.create
    if status == 401:
        with pytest.raises(openai.AuthenticationError):
            create(**recorded["request"])
    elif isinstance(body, str):
        chunks = list(create(**{**recorded["request"], "stream": True}))
        assert len(chunks) == body.count("data: ") - 1  # every event but [DONE]
    else:
        assert create(**recorded["request"]).id == body["id"]


# -- the connection and the recording ---------------------------------------------------------

@pytest.mark.server
def test_requests_are_recorded_and_keep_alive_works(chat_server: ChatServer,
                                                    client: openai.OpenAI) -> None:
    for i in range(20):
        answer = client.chat.completions.create(model="m", messages=user(f"number {i}"))
        assert answer.choices[0].message.content == f"You said: number {i}"
    assert [r.body["messages"][0]["content"] for r in chat_server.requests] == [
        f"number {i}" for i in range(20)]
    first = chat_server.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer test"
    conn = http.client.HTTPConnection("127.0.0.1", chat_server.port, timeout=5)
    try:
        sockets = []
        for _ in range(3):
            conn.request("POST", "/v1/chat/completions", body=json.dumps(ask("Hi")))
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
            sockets.append(conn.sock)
        assert sockets[0] is sockets[1] is sockets[2]
    finally:
        conn.close()


@pytest.mark.server
def test_command_line_server_answers_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "flowrunner.testing.server", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            base_url = re.search(r"http://127\.0\.0\.1:\d+/v1", process.stdout.readline()).group()
            request = urllib.request.Request(base_url + "/chat/completions",
                                             data=json.dumps(ask("Hello")).encode(),
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.load(response)["choices"][0]["message"]["content"].startswith("Hello")
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=5)
        finally:
            process.kill()
    assert process.returncode == 0
    assert err == ""  # no traceback, no warning


@pytest.mark.server
def test_hundreds_of_connections_at_once_are_all_answered() -> None:
    # socketserver's listen backlog of 5 closed about a quarter of these connections unanswered.
    import asyncio

    async def ask_all(base_url: str) -> list[Any]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
            return await asyncio.gather(*(client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"Question {n}"}])
                for n in range(300)), return_exceptions=True)

    with ChatServer(latency=0.1, validate_responses=False) as server:
        results = asyncio.run(ask_all(server.base_url))
        received = len(server.requests)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert received == 300
