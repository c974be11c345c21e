"""The span plan of a record built by hand: times, events, errors, settings (no OpenTelemetry involved)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowrunner._record import AttemptRecord, CallRecord, RoundRecord, RunRecord, StepRecord
from flowrunner._secrets import register
from flowrunner.tracing._spans import CONTENT_LIMIT, SpanPlan, plan


def timed(obj: Any, **times: float) -> Any:
    """Set timing fields on a record part (they are None, or not there yet, on records of older versions)."""
    for name, value in times.items():
        setattr(obj, name, value)
    return obj


def run_record() -> RunRecord:
    """A run at t=1000: a rate-limit wait of 0.5 s, a 429 retried after 1 s, a function call, an answer."""
    call = timed(CallRecord(id="call_1", name="get_current_weather", arguments={"location": "Boston"},
                            result={"temperature": "72"}), started=1004.0, duration=0.25)
    first = timed(RoundRecord(response_id="chatcmpl-1", model="gpt-4o-mini-2024-07-18", finish_reason="tool_calls",
                              content=None, calls=[call],
                              usage={"prompt_tokens": 68, "completion_tokens": 2, "total_tokens": 70,
                                     "prompt_tokens_details": {"cached_tokens": 64}},
                              attempts=[timed(AttemptRecord(status=429, error="RateLimitError", code="rate_limit_exceeded",
                                                            message="Rate limit reached", slept=1.0),
                                              started=1000.5, duration=0.1),
                                        timed(AttemptRecord(status=200), started=1001.6, duration=2.0)]),
                  started=1000.0, sent=1001.6, latency=2.0, ttft=0.4, waited_rate_limit=0.5, waited_retry=1.0,
                  cost=0.00002)
    second = timed(RoundRecord(response_id="chatcmpl-2", model="gpt-4o-mini-2024-07-18", finish_reason="stop",
                               content="72 and sunny", usage={"prompt_tokens": 77, "completion_tokens": 11},
                               attempts=[timed(AttemptRecord(status=200), started=1004.3, duration=0.7)]),
                   started=1004.3, sent=1004.3, latency=0.7, cost=0.00003)
    step = timed(StepRecord(id="answer", model="gpt-4o-mini", content="72 and sunny", rounds=[first, second],
                            usage={"prompt_tokens": 145, "completion_tokens": 13, "total_tokens": 158}),
                 started=1000.0, duration=5.0, cost=0.00005)
    return timed(RunRecord(flow="weather", file="flows/weather.yaml", inputs={"question": "Weather in Boston?"},
                           outputs={"answer": "72 and sunny"}, steps=[step]), started=999.9, duration=5.2, cost=0.00005)


def spans_of(root: SpanPlan) -> dict[str, list[SpanPlan]]:
    found: dict[str, list[SpanPlan]] = {}
    for span in root.walk():
        found.setdefault(span.name, []).append(span)
    return found


def test_spans_take_the_records_times_and_waits_are_events():
    root = plan(run_record(), None, base_url="https://api.openai.com/v1", capture_content=False, now=0.0)
    spans = spans_of(root)
    (agent,) = spans["invoke_agent answer"]
    first, second = spans["chat gpt-4o-mini"]
    (tool,) = spans["execute_tool get_current_weather"]
    assert (root.start, root.end) == (999.9, pytest.approx(1005.1))
    assert (agent.start, agent.end) == (1000.0, 1005.0)
    # A request spans its rate-limit wait and its retries, to its whole answer (sent + latency).
    assert (first.start, first.end) == (1000.0, 1003.6)
    assert (tool.start, tool.end) == (1004.0, 1004.25)
    assert (second.start, second.end) == (1004.3, 1005.0)
    assert [child.name for child in agent.children] == ["chat gpt-4o-mini", "execute_tool get_current_weather",
                                                        "chat gpt-4o-mini"]
    wait, retry, first_token = first.events
    assert (wait.name, wait.time, wait.attributes) == ("flowrunner.rate_limit.wait", 1000.0,
                                                       {"flowrunner.wait.seconds": 0.5})
    assert (retry.name, retry.time) == ("flowrunner.retry", pytest.approx(1000.6))
    assert retry.attributes == {"flowrunner.attempt": 1, "error.type": "429", "flowrunner.retry.delay": 1.0,
                                "http.response.status_code": 429, "flowrunner.retry.reason": "Rate limit reached"}
    assert (first_token.name, first_token.time) == ("flowrunner.first_token", pytest.approx(1002.0))
    assert second.events == []
    assert first.attributes["flowrunner.waited_rate_limit"] == 0.5
    assert first.attributes["flowrunner.waited_retry"] == 1.0
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 64
    assert first.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (first.attributes["server.address"], first.attributes["server.port"]) == ("api.openai.com", 443)
    assert [s.attributes["flowrunner.cost.usd"] for s in (root, agent, first, second)] == [0.00005, 0.00005,
                                                                                          0.00002, 0.00003]


def test_a_record_without_times_still_makes_a_tree_at_now():
    record = run_record()
    rounds = record.steps[0].rounds
    for part in [record, *record.steps, *rounds, *(c for r in rounds for c in r.calls),
                 *(a for r in rounds for a in r.attempts)]:
        for name in ("started", "duration", "sent", "latency", "ttft", "waited_rate_limit", "waited_retry", "cost"):
            if hasattr(part, name):
                setattr(part, name, None)
    root = plan(record, None, base_url=None, capture_content=False, now=42.0)
    assert {(span.start, span.end) for span in root.walk()} == {(42.0, 42.0)}
    assert [event.name for event in root.walk()[2].events] == ["flowrunner.retry"]
    assert root.walk()[2].attributes["gen_ai.provider.name"] == "openai"
    assert "server.address" not in root.walk()[2].attributes  # a replay: where it went is not known


@pytest.mark.parametrize("url, provider, address, port", [
    ("http://127.0.0.1:8765/v1", "openai", "127.0.0.1", 8765),
    ("https://api.groq.com/openai/v1", "groq", "api.groq.com", 443),
    ("https://my-team.openai.azure.com/openai", "azure.ai.openai", "my-team.openai.azure.com", 443),
    ("http://localhost:11434/v1", "openai", "localhost", 11434),
    ("https://api.deepseek.com", "deepseek", "api.deepseek.com", 443),
])
def test_the_provider_and_server_come_from_the_base_url(url, provider, address, port):
    chat = plan(run_record(), None, base_url=url, capture_content=False, now=0.0).walk()[2]
    assert chat.attributes["gen_ai.provider.name"] == provider
    assert (chat.attributes["server.address"], chat.attributes["server.port"]) == (address, port)


def test_a_request_that_failed_after_its_retries_is_in_error_with_its_status():
    failed = RoundRecord(response_id=None, model=None, finish_reason=None, content=None, attempts=[
        AttemptRecord(status=503, error="InternalServerError", message="overloaded", slept=0.5),
        AttemptRecord(status=None, error="APITimeoutError", message="Request timed out.")])
    step = StepRecord(id="answer", model="gpt-4o-mini", status="failed", rounds=[failed])
    record = RunRecord(flow="weather", file="w.yaml", inputs={}, status="failed", steps=[step],
                       error={"type": "APITimeoutError", "message": "step 'answer': Request timed out.", "step": "answer"})
    root = plan(record, None, base_url=None, capture_content=True, now=5.0)
    _, agent, chat = root.walk()
    assert chat.error == "Request timed out." and chat.attributes["error.type"] == "APITimeoutError"
    assert [e.attributes["error.type"] for e in chat.events] == ["503"]  # the retried one; the last is the span's
    assert "gen_ai.response.id" not in chat.attributes and "gen_ai.output.messages" not in chat.attributes
    assert agent.attributes["error.type"] == root.attributes["error.type"] == "APITimeoutError"
    assert root.error == "step 'answer': Request timed out."
    assert "flowrunner.run.outputs" not in root.attributes  # a failed run has none


@pytest.mark.parametrize("error, expected", [
    ("invalid arguments for f: 'location' is a required property", "invalid_arguments"),
    ("there is no function 'g'; the functions you can call are: f", "unknown_function"),
    ("not run: the response asked for 40 function calls, more than the 32 allowed at once", "not_run"),
    ("function 'f' did not finish within its timeout of 10s", "timeout"),
    ("function 'f' raised KeyError: 'x' at tools.py:3", "KeyError"),
    ("something else", "function_error"),
])
def test_a_failed_function_call_names_its_error_type(error, expected):
    call = CallRecord(id="c", name="f", arguments={}, error=error)
    round_ = RoundRecord(response_id="r", model="m", finish_reason="tool_calls", content=None, calls=[call])
    record = RunRecord(flow="x", file="x.yaml", inputs={}, steps=[StepRecord(id="s", model="m", rounds=[round_])])
    tool = plan(record, None, base_url=None, capture_content=False, now=0.0).walk()[-1]
    assert tool.attributes["error.type"] == expected and tool.error == error


def test_captured_content_is_redacted_and_clipped():
    register("sk-this-is-the-key-1234", "OPENAI_API_KEY")
    call = CallRecord(id="c", name="f", arguments={"text": "sk-this-is-the-key-1234"}, result="x" * (CONTENT_LIMIT + 10))
    round_ = RoundRecord(response_id="r", model="m", finish_reason="tool_calls", content=None, calls=[call])
    record = RunRecord(flow="x", file="x.yaml", inputs={}, steps=[StepRecord(id="s", model="m", rounds=[round_])])
    tool = plan(record, None, base_url=None, capture_content=True, now=0.0).walk()[-1]
    assert json.loads(str(tool.attributes["gen_ai.tool.call.arguments"])) == {"text": "[redacted:OPENAI_API_KEY]"}
    result = str(tool.attributes["gen_ai.tool.call.result"])
    assert len(result) < CONTENT_LIMIT + 40 and result.endswith(f"... ({CONTENT_LIMIT + 10:,} characters)")


def test_a_steps_settings_override_the_flows_defaults(make_flow):
    flow = make_flow("""\
        name: odd
        model: gpt-4o-mini
        defaults: {temperature: 0.5, max_completion_tokens: 20, seed: 3, stop: "END", service_tier: flex}
        steps:
          - id: reply
            temperature: 1
            messages: [{role: user, content: hi}]
    """)
    round_ = RoundRecord(response_id="r", model="m", finish_reason="stop", content="hi")
    record = RunRecord(flow="odd", file="odd.yaml", inputs={}, steps=[StepRecord(id="reply", model="gpt-4o-mini",
                                                                                 rounds=[round_])])
    chat = plan(record, flow, base_url=None, capture_content=False, now=0.0).walk()[-1]
    settings = {k: v for k, v in chat.attributes.items() if k.startswith(("gen_ai.request.", "openai."))}
    assert settings == {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.request.temperature": 1.0,
                        "gen_ai.request.max_tokens": 20, "gen_ai.request.seed": 3,
                        "gen_ai.request.stop_sequences": ["END"],
                        "openai.request.service_tier": "flex"}


def test_token_counts_past_64_bits_are_left_out():
    round_ = RoundRecord(response_id="r", model="m", finish_reason="stop", content="hi",
                         usage={"prompt_tokens": 21128794438786060288, "completion_tokens": 3})
    record = RunRecord(flow="x", file="x.yaml", inputs={}, steps=[StepRecord(id="s", model="m", rounds=[round_])])
    chat = plan(record, None, base_url=None, capture_content=False, now=0.0).walk()[-1]
    assert "gen_ai.usage.input_tokens" not in chat.attributes and chat.attributes["gen_ai.usage.output_tokens"] == 3
