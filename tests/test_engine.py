"""The engine's function-call loop, steps and outputs, driven by scripted completions (no HTTP)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from flowrunner import Engine, FunctionTransport, InputError, MaxRoundsError
from flowrunner._exceptions import ConfigError

from test_json import DEEP, LONG_INT

TOOLS = """
    import json, threading

    def get_current_weather(location, unit="fahrenheit"):
        return {"location": location, "temperature": "72", "unit": unit}

    def get_foo(location, foo):
        return "foo"

    _barrier = threading.Barrier(2, timeout=5)

    def meet(name):
        # Two calls only get past this together: proves parallel calls run concurrently.
        _barrier.wait()
        return name

    def broken(location):
        return 1 / 0
"""

WEATHER = """
    name: weather
    model: test-model
    inputs:
      question: {type: string, default: "What's the weather in Boston?"}
    functions:
      get_current_weather:
        entry: tools:get_current_weather
        description: Get the current weather in a given location
        parameters:
          type: object
          properties:
            location: {type: string}
            unit: {type: string, enum: [celsius, fahrenheit]}
          required: [location]
      get_foo:
        entry: tools:get_foo
        parameters: {type: object, properties: {location: {type: string}, foo: {type: string}}, required: [location, foo]}
      meet:
        entry: tools:meet
        parameters: {type: object, properties: {name: {type: string}}, required: [name]}
      broken:
        entry: tools:broken
        parameters: {type: object, properties: {location: {type: string}}, required: [location]}
    steps:
      - id: answer
        messages:
          - {role: system, content: You are a helpful assistant.}
          - {role: user, content: "{{ inputs.question }}"}
        functions: [get_current_weather, meet, broken]
        max_rounds: 3
    outputs:
      answer: "{{ steps.answer.content }}"
"""


def answer(text: str, usage: int = 5) -> dict[str, Any]:
    return {"id": "chatcmpl-a", "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage, "completion_tokens": 1, "total_tokens": usage + 1}}


def calls(*pairs: tuple[str, str]) -> dict[str, Any]:
    tool_calls = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                  for i, (n, a) in enumerate(pairs)]
    return {"id": "chatcmpl-c", "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": tool_calls}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


def scripted(*responses: dict[str, Any]) -> FunctionTransport:
    queue = list(responses)
    return FunctionTransport(lambda request: queue.pop(0))


@pytest.fixture
def weather(make_flow):
    return make_flow(WEATHER, tools=TOOLS)


def test_one_call_round_sends_result_back(weather):
    transport = scripted(calls(("get_current_weather", '{"location": "Boston"}')), answer("It is 72 and sunny."))
    record = Engine(transport).run(weather)
    assert record.status == "succeeded", record.error
    assert record.outputs == {"answer": "It is 72 and sunny."}
    assert [len(r.calls) for r in record.steps[0].rounds] == [1, 0]
    call = record.steps[0].rounds[0].calls[0]
    assert call.arguments == {"location": "Boston"}
    assert call.result == {"location": "Boston", "temperature": "72", "unit": "fahrenheit"}
    first, second = transport.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["get_current_weather", "meet", "broken"]
    assert first["model"] == "test-model"
    sent = second["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["id"] == "call_0"
    assert sent[3]["tool_call_id"] == "call_0"
    assert json.loads(sent[3]["content"])["temperature"] == "72"
    assert record.usage == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}


def test_parallel_calls_run_concurrently_and_reply_in_order(weather):
    transport = scripted(calls(("meet", '{"name": "a"}'), ("meet", '{"name": "b"}')), answer("done"))
    record = Engine(transport).run(weather)
    assert record.status == "succeeded", record.error
    tool_messages = [m for m in transport.requests[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("call_0", "a"), ("call_1", "b")]


@pytest.mark.parametrize("arguments, expected", [
    ('{"location": "Bos', "not valid JSON"),
    ('["Boston"]', "must be a JSON object"),
    ('{"unit": "celsius"}', "'location' is a required property"),
    ('{"location": "Boston", "unit": "kelvin"}', "'kelvin' is not one of"),
    ('{"location": 42}', "42 is not of type 'string'"),
])
def test_bad_arguments_go_back_to_the_model(weather, arguments, expected):
    transport = scripted(calls(("get_current_weather", arguments)),
                         calls(("get_current_weather", '{"location": "Boston"}')), answer("ok"))
    record = Engine(transport).run(weather)
    assert record.status == "succeeded", record.error
    bad = record.steps[0].rounds[0].calls[0]
    assert expected in bad.error
    reply = transport.requests[1]["messages"][-1]
    assert reply["role"] == "tool" and reply["content"].startswith("Error: ") and expected in reply["content"]
    assert record.steps[0].rounds[1].calls[0].result["temperature"] == "72"


@pytest.mark.parametrize("name", ["get_weather", "get_foo"])  # unknown; declared but not offered in this step
def test_unknown_function_goes_back_to_the_model(weather, name):
    transport = scripted(calls((name, '{"location": "Boston", "foo": "x"}')), answer("sorry"))
    record = Engine(transport).run(weather)
    assert record.status == "succeeded"
    reply = transport.requests[1]["messages"][-1]["content"]
    assert f"there is no function '{name}'" in reply
    assert "get_current_weather, meet, broken" in reply


def test_max_rounds_fails_the_run_with_everything_recorded(weather):
    always = calls(("get_current_weather", '{"location": "Boston"}'))
    record = Engine(FunctionTransport(lambda request: always)).run(weather)
    assert record.status == "failed"
    assert isinstance(record.exception, MaxRoundsError)
    assert record.error["step"] == "answer" and "max_rounds=3" in record.error["message"]
    assert len(record.steps[0].rounds) == 3
    assert record.steps[0].status == "failed"
    with pytest.raises(MaxRoundsError):
        record.raise_for_status()


STRICT = WEATHER.replace("entry: tools:broken", "entry: tools:broken\n        on_error: fail")


def test_raising_function_replies_to_the_model_by_default(weather):
    transport = scripted(calls(("broken", '{"location": "Boston"}')), answer("Sorry, no weather today."))
    record = Engine(transport).run(weather)
    assert record.status == "succeeded", record.error
    call = record.steps[0].rounds[0].calls[0]
    assert "'broken' raised ZeroDivisionError: division by zero" in call.error and ".py:" in call.error
    sent = transport.requests[1]["messages"][-1]
    # The model is told what happened, briefly, without the user's file paths.
    assert sent == {"role": "tool", "tool_call_id": "call_0",
                    "content": "Error: the function raised ZeroDivisionError: division by zero."}


def test_raising_function_with_on_error_fail_fails_the_run_and_says_where(make_flow):
    transport = scripted(calls(("broken", '{"location": "Boston"}')))
    record = Engine(transport).run(make_flow(STRICT, tools=TOOLS))
    assert record.status == "failed"
    assert record.error["type"] == "FunctionError"
    assert "'broken' raised ZeroDivisionError: division by zero" in record.error["message"]
    assert ".py:" in record.error["message"]  # the line in the user's module
    assert record.steps[0].rounds[0].calls[0].error == record.error["message"]


def test_legacy_functions_protocol(make_flow):
    flow = make_flow(WEATHER.replace("model: test-model", "model: test-model\n    api: functions"), tools=TOOLS)
    legacy = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "function_call", "message": {
        "role": "assistant", "content": None,
        "function_call": {"name": "get_current_weather", "arguments": '{\n  "location": "Boston"\n}'}}}]}
    transport = scripted(legacy, answer("72 in Boston"))
    record = Engine(transport).run(flow)
    assert record.status == "succeeded", record.error
    first, second = transport.requests
    assert "tools" not in first and [f["name"] for f in first["functions"]] == ["get_current_weather", "meet", "broken"]
    assert second["messages"][2]["function_call"]["name"] == "get_current_weather"
    result = second["messages"][3]
    assert result["role"] == "function" and result["name"] == "get_current_weather"
    assert json.loads(result["content"])["temperature"] == "72"


CHAIN = """
    name: chain
    model: m1
    defaults: {temperature: 0.5, seed: 1}
    inputs:
      text: {type: string}
      count: {type: integer, default: 2}
    steps:
      - id: facts
        temperature: 0
        extra_body: {top_k: 40}
        messages:
          - {role: user, content: "List {{ inputs.count }} facts about {{ inputs.text }} as JSON."}
      - id: pick
        model: m2
        messages:
          - {role: user, content: "First: {{ steps.facts.json.facts[0] }}. All: {{ steps.facts.content }}"}
    outputs:
      first: "{{ steps.facts.json.facts[0] }}"
      picked: "{{ steps.pick.content }}"
"""


def test_steps_feed_later_steps_and_options_pass_through(make_flow):
    flow = make_flow(CHAIN)
    facts = '```json\n{"facts": ["a", "b"]}\n```'
    transport = scripted(answer(facts), answer("a it is"))
    record = Engine(transport).run(flow, {"text": "cats", "count": "2"}, inputs_as_text=True)
    assert record.status == "succeeded", record.error
    assert record.inputs == {"text": "cats", "count": 2}
    assert record.outputs == {"first": "a", "picked": "a it is"}
    first, second = transport.requests
    assert first["messages"][0]["content"] == "List 2 facts about cats as JSON."
    assert (first["model"], first["temperature"], first["seed"], first["top_k"]) == ("m1", 0, 1, 40)
    assert (second["model"], second["temperature"]) == ("m2", 0.5)
    assert second["messages"][0]["content"].startswith("First: a. All: ```json")


def test_json_of_non_json_content_is_a_located_template_error(make_flow):
    flow = make_flow(CHAIN)
    record = Engine(scripted(answer("no JSON here"))).run(flow, {"text": "cats"})
    assert record.status == "failed" and record.error["type"] == "TemplateError"
    assert "content of step 'facts' is not JSON" in record.error["message"]
    assert "flow.yaml:" in record.error["message"]


def test_model_override(make_flow):
    flow = make_flow(CHAIN)
    transport = scripted(answer('{"facts": [1]}'), answer("ok"))
    Engine(transport, model="override").run(flow, {"text": "x"})
    assert [r["model"] for r in transport.requests] == ["override", "override"]


def test_input_errors(make_flow):
    flow = make_flow(CHAIN)
    engine = Engine(scripted())
    with pytest.raises(InputError, match="needs input 'text'"):
        engine.run(flow, {})
    with pytest.raises(InputError, match="did you mean 'text'"):
        engine.run(flow, {"txt": "x"})
    with pytest.raises(InputError, match="expects integer"):
        engine.run(flow, {"text": "x", "count": "two"}, inputs_as_text=True)
    with pytest.raises(InputError, match="is not of type 'integer'"):
        engine.run(flow, {"text": "x", "count": "2"})


def test_no_model_anywhere_is_a_config_error(make_flow):
    flow = make_flow("""
        steps:
          - id: a
            messages: [{role: user, content: hi}]
    """)
    with pytest.raises(ConfigError, match="has no model"):
        Engine(scripted()).run(flow)
    assert Engine(scripted(answer("hi")), model="m").run(flow).outputs == {"a": "hi"}


def test_record_is_json_ready(weather):
    transport = scripted(calls(("get_current_weather", '{"location": "Boston"}')), answer("72"))
    data = Engine(transport).run(weather).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["steps"][0]["rounds"][0]["calls"][0]["name"] == "get_current_weather"
    assert data["steps"][0]["rounds"][0]["response_id"] == "chatcmpl-c"


def test_chat_session_keeps_history_and_recovers_from_failure(make_flow):
    flow = make_flow(STRICT, tools=TOOLS)
    replies = [calls(("get_current_weather", '{"location": "Boston"}')), answer("72 in Boston"),
               calls(("broken", '{"location": "x"}')), answer("hello again")]
    transport = FunctionTransport(lambda request: replies.pop(0))
    session = Engine(transport).chat(flow)
    assert session.awaiting_answer  # the step's own messages end with the user's question
    assert session.send(None).content == "72 in Boston"
    with pytest.raises(Exception, match="ZeroDivisionError"):
        session.send("and now?")
    assert session.send("hi").content == "hello again"
    roles = [m["role"] for m in transport.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


def test_legacy_protocol_gets_function_call_instead_of_tool_choice(make_flow):
    text = WEATHER.replace("model: test-model", "model: test-model\n    api: functions").replace(
        "max_rounds: 3", "max_rounds: 3\n        tool_choice: {type: function, function: {name: get_current_weather}}"
        "\n        parallel_tool_calls: false")
    flow = make_flow(text, tools=TOOLS)
    transport = scripted(answer("fine"))
    Engine(transport).run(flow)
    request = transport.requests[0]
    assert request["function_call"] == {"name": "get_current_weather"}
    assert "tool_choice" not in request and "parallel_tool_calls" not in request


# -- tool-call policies -----------------------------------------------------------------------------

def test_invalid_arguments_with_on_invalid_arguments_fail_end_the_run(make_flow):
    text = WEATHER.replace("entry: tools:get_current_weather", "entry: tools:get_current_weather\n"
                           "        on_invalid_arguments: fail")
    transport = scripted(calls(("get_current_weather", '{"location": 3}')))
    record = Engine(transport).run(make_flow(text, tools=TOOLS))
    assert record.status == "failed" and record.error["type"] == "FunctionError"
    assert "invalid arguments for get_current_weather: location: 3 is not of type 'string'" in record.error["message"]
    assert len(transport.requests) == 1


def test_arguments_the_schema_does_not_name_never_reach_the_function(weather):
    transport = scripted(calls(("get_current_weather", '{"location": "Boston", "shell": "rm -rf /"}')),
                         answer("ok"))
    record = Engine(transport).run(weather)
    call = record.steps[0].rounds[0].calls[0]
    assert call.result is None
    assert call.error == ("invalid arguments for get_current_weather: unexpected argument 'shell' "
                          "(the function takes: location, unit)")


def test_a_function_past_its_timeout_is_an_error_sent_back(make_flow):
    tools = TOOLS + "\n    import time\n\n    def slow(location):\n        time.sleep(5)\n        return 'late'\n"
    text = WEATHER.replace("      broken:\n", "      slow:\n        entry: tools:slow\n        timeout: 50ms\n"
                           "        parameters: {type: object, properties: {location: {type: string}}, required: [location]}\n"
                           "      broken:\n").replace("functions: [get_current_weather, meet, broken]",
                                                       "functions: [slow]")
    transport = scripted(calls(("slow", '{"location": "x"}')), answer("gave up on slow"))
    started = time.monotonic()
    record = Engine(transport).run(make_flow(text, tools=tools))
    assert time.monotonic() - started < 2
    assert record.status == "succeeded"
    assert "did not finish within its timeout of 50ms" in record.steps[0].rounds[0].calls[0].error
    assert transport.requests[1]["messages"][-1]["content"] == "Error: the function did not finish within 50ms."


def test_max_rounds_answer_makes_one_last_request_without_functions(make_flow):
    text = WEATHER.replace("max_rounds: 3", "max_rounds: 2\n        on_max_rounds: answer\n"
                           "        tool_choice: auto\n        parallel_tool_calls: true")
    again = calls(("get_current_weather", '{"location": "Boston"}'))
    transport = scripted(again, again, answer("72, as far as I can tell"))
    record = Engine(transport).run(make_flow(text, tools=TOOLS))
    assert record.status == "succeeded", record.error
    assert record.outputs == {"answer": "72, as far as I can tell"}
    last = transport.requests[-1]
    assert len(transport.requests) == 3
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(last)
    assert [m["role"] for m in last["messages"]][-2:] == ["assistant", "tool"]


def test_max_rounds_fail_is_the_default(weather):
    again = calls(("get_current_weather", '{"location": "Boston"}'))
    record = Engine(scripted(again, again, again)).run(weather)
    assert record.error["type"] == "MaxRoundsError" and "on_max_rounds: answer" in record.error["message"]


# -- retries and secrets ----------------------------------------------------------------------------

def failing_then(errors: list[Exception], *responses: dict[str, Any]) -> FunctionTransport:
    queue = list(responses)

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        if errors:
            raise errors.pop(0)
        return queue.pop(0)

    return FunctionTransport(handler)


def test_retried_rounds_record_every_attempt_and_emit_retry_events(make_flow):
    from flowrunner import APIError

    flow = make_flow(WEATHER + "    retry: {backoff: {initial: 10ms, jitter: none}}\n", tools=TOOLS)
    errors: list[Exception] = [APIError("HTTP 503: busy", status=503, headers={"retry-after-ms": "5"}),
                               APIError("HTTP 500: oops", status=500)]
    events, slept = [], []
    engine = Engine(failing_then(errors, answer("fine")), on_event=events.append, sleep=slept.append)
    record = engine.run(flow)
    assert record.status == "succeeded", record.error
    attempts = record.to_dict()["steps"][0]["rounds"][0]["attempts"]
    assert [(a["status"], a["slept"]) for a in attempts] == [(503, 0.005), (500, 0.02), (200, 0.0)]
    assert slept == [0.005, 0.02]
    assert [e.attempt.status for e in events if e.kind == "retry"] == [503, 500]


def test_a_step_retry_overrides_the_flows(make_flow):
    from flowrunner import APIError

    text = WEATHER.replace("max_rounds: 3", "max_rounds: 3\n        retry: {max_attempts: 1}") + \
        "    retry: {max_attempts: 4, backoff: {initial: 1ms}}\n"
    record = Engine(failing_then([APIError("HTTP 500: oops", status=500)], answer("x")),
                    sleep=lambda s: None).run(make_flow(text, tools=TOOLS))
    assert record.status == "failed" and len(record.steps[0].rounds[0].attempts) == 1


def test_env_inputs_are_read_and_redacted_everywhere_in_the_record(make_flow, monkeypatch):
    from flowrunner._secrets import forget_all

    monkeypatch.setenv("CUSTOMER_TOKEN", "tok-1234-secret")
    text = WEATHER.replace('question: {type: string, default: "What\'s the weather in Boston?"}',
                           'question: {type: string, default: "Weather?"}\n'
                           '      token: {type: string, env: CUSTOMER_TOKEN}').replace(
        'content: "{{ inputs.question }}"', 'content: "{{ inputs.question }} (customer {{ inputs.token }})"')
    try:
        transport = scripted(answer("Hello customer tok-1234-secret"))
        record = Engine(transport).run(make_flow(text, tools=TOOLS))
        assert "tok-1234-secret" in transport.requests[0]["messages"][1]["content"]  # the server got it
        dumped = json.dumps(record.to_dict())
        assert "tok-1234-secret" not in dumped and "[redacted:CUSTOMER_TOKEN]" in dumped
        assert record.outputs == {"answer": "Hello customer [redacted:CUSTOMER_TOKEN]"}
    finally:
        forget_all()


def test_an_env_input_without_its_variable_says_which_to_set(make_flow, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = WEATHER.replace('question: {type: string, default: "What\'s the weather in Boston?"}',
                           'question: {type: string, env: NOT_SET_ANYWHERE}')
    with pytest.raises(InputError, match="set the environment variable NOT_SET_ANYWHERE, or pass it with -i"):
        Engine(scripted()).run(make_flow(text, tools=TOOLS))


# -- structured output ------------------------------------------------------------------------------

STRUCTURED = """
    model: m
    steps:
      - id: extract
        response_format:
          type: json_schema
          json_schema:
            name: city
            schema: {type: object, properties: {city: {type: string}, temperature: {type: integer}},
                     required: [city, temperature], additionalProperties: false}
        messages: [{role: user, content: "Boston is 72 degrees"}]
      - id: use
        messages: [{role: user, content: "{{ steps.extract.json.city }} at {{ steps.extract.json.temperature }}"}]
"""


def test_an_invalid_structured_answer_is_sent_back_until_it_matches(make_flow):
    transport = scripted(answer("Sure! Boston, 72."), answer('{"city": "Boston", "temperature": "72"}'),
                         answer('```json\n{"city": "Boston", "temperature": 72}\n```'), answer("ok"))
    record = Engine(transport).run(make_flow(STRUCTURED))
    assert record.status == "succeeded", record.error
    rounds = record.steps[0].rounds
    assert rounds[0].invalid_output.startswith("the answer is not valid JSON")
    assert rounds[1].invalid_output == "the answer does not match the schema: temperature: '72' is not of type 'integer'"
    assert rounds[2].invalid_output is None
    repair = transport.requests[2]["messages"][-1]
    assert repair["role"] == "user" and "temperature: '72' is not of type 'integer'" in repair["content"]
    assert transport.requests[3]["messages"][0]["content"] == "Boston at 72"


def test_a_structured_answer_that_never_matches_fails_the_run(make_flow):
    flow = make_flow(STRUCTURED.replace("        response_format:", "        repair: 1\n        response_format:"))
    transport = scripted(answer("nope"), answer('{"city": 1}'))
    record = Engine(transport).run(flow)
    assert record.status == "failed" and record.error["type"] == "OutputError"
    assert record.error["message"].startswith("step 'extract': the answer does not match the schema")
    assert "after 1 repair request" in record.error["message"]
    assert len(transport.requests) == 2


# -- the shared rate limiter --------------------------------------------------------------------------

def test_engines_for_the_same_server_share_one_limiter_and_other_servers_get_their_own():
    from flowrunner import OpenAITransport
    from flowrunner._ratelimit import shared_limiter

    url = "http://127.0.0.1:9/shared-limiter-test/v1"
    first = Engine(OpenAITransport(base_url=url))
    second = Engine(OpenAITransport(base_url=url + "/"))  # the same server, spelled with a trailing slash
    other = Engine(OpenAITransport(base_url="http://127.0.0.1:9/another-server/v1"))
    assert first.limiter is second.limiter is shared_limiter(url)
    assert other.limiter is not first.limiter and other.limiter is shared_limiter("http://127.0.0.1:9/another-server/v1")
    assert Engine(OpenAITransport()).limiter is shared_limiter("https://api.openai.com/v1")  # OpenAI's own


@pytest.mark.server
@pytest.mark.parametrize("content", ['{"x": ' + DEEP + "}", '{"x": ' + LONG_INT + "}"], ids=["deep", "long-int"])
def test_an_answer_json_cannot_hold_is_text_for_later_steps_not_a_crash(make_flow, chat_server, content):
    from flowrunner import OpenAITransport
    from flowrunner.testing import faults

    flow = make_flow("""
        model: m
        steps:
          - id: first
            messages: [{role: user, content: "Say hi"}]
        outputs:
          size: "{{ steps.first.content | length }}"
    """)
    chat_server.enqueue(faults.completion(content))
    with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
        record = Engine(transport).run(flow)
    assert record.status == "succeeded", record.error
    assert record.outputs == {"size": str(len(content))}


class _Watching:
    """A transport that notes whether it was asked to report each request's departure."""

    scope = "watching"

    def __init__(self) -> None:
        self.watched: list[bool] = []

    def complete(self, request, on_chunk=None, on_sent=None):
        from flowrunner._transport import parse_completion

        self.watched.append(on_sent is not None)
        if on_sent is not None:
            on_sent()
        return parse_completion({"choices": [{"message": {"role": "assistant", "content": "hi"},
                                              "finish_reason": "stop"}]})


@pytest.mark.parametrize("rate_limit, on_event, watched", [
    (None, None, False),  # nobody needs to know when it left: the HTTP client is spared the watching
    ("rpm=600", None, True),  # pacing counts from the departure
    ("tpm=100000", None, True),
    (None, lambda event: None, True),  # progress shows it
])
def test_the_transport_watches_for_a_departure_only_when_pacing_or_progress_needs_it(
        make_flow, rate_limit, on_event, watched):
    from flowrunner._ratelimit import RateLimiter, parse_rate_limit

    flow = make_flow("""
        name: hello
        model: test-model
        steps:
          - id: reply
            messages: [{role: user, content: hi}]
        """)
    transport = _Watching()
    engine = Engine(transport, on_event=on_event, limiter=RateLimiter(sleep=lambda _: None),
                    rate_limit=parse_rate_limit(rate_limit) if rate_limit else None)
    assert engine.run(flow).status == "succeeded"
    assert transport.watched == [watched]


def test_a_limit_the_server_stated_is_paced_from_departures_too(make_flow):
    # Nothing declared and no progress shown, but the server stated its limit: the next turn counts from
    # this request's departure, so the transport must report it (else each turn waited for the answer).
    from flowrunner._ratelimit import RateLimiter

    flow = make_flow("""
        name: hello
        model: test-model
        steps:
          - id: reply
            messages: [{role: user, content: hi}]
        """)
    transport = _Watching()
    limiter = RateLimiter(sleep=lambda _: None)
    limiter.observe({"x-ratelimit-limit-requests": "600"})
    assert limiter.learned.rpm == 600
    engine = Engine(transport, limiter=limiter)
    assert engine.run(flow).status == "succeeded"
    assert transport.watched == [True]
