"""Every genuine OpenAI response in tests/data/real-responses, served over HTTP, through the engine.

Each test builds a flow offering the functions the original request offered, has the test server
answer the first request with the recorded response (status, headers, body, streams included),
and lets the server's rules answer the follow-up after the function results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowrunner import APIError, Engine, OpenAITransport, load_flow
from flowrunner._functions import validate_arguments
from flowrunner.testing import Reply

REAL = Path(__file__).parent / "data" / "real-responses"

ECHO = '''
def echo(**arguments):
    """Stands in for any recorded function: returns what it was given."""
    return {"echo": arguments}
'''


def declared(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The function declarations of a recorded request, under `tools` or legacy `functions`."""
    return [t["function"] for t in request.get("tools", [])] or request.get("functions", [])


def flow_for(recorded: dict[str, Any], folder: Path) -> Path:
    """A flow that makes the same kind of request as the recorded one."""
    request = recorded["request"]
    functions = declared(request)
    user = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
    flow: dict[str, Any] = {"name": "real", "model": request["model"]}
    if "functions" in request:
        flow["api"] = "functions"
    if functions:
        flow["functions"] = {d["name"]: {"entry": "echo_tools:echo", "parameters": d["parameters"]} for d in functions}
    step: dict[str, Any] = {"id": "ask", "messages": [{"role": "user", "content": user}]}
    if functions:
        step["functions"] = [d["name"] for d in functions]
    if request.get("stream"):
        step["stream"] = True
        if "stream_options" in request:
            step["stream_options"] = request["stream_options"]
    flow["steps"] = [step]
    (folder / "echo_tools.py").write_text(ECHO)
    path = folder / "real.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return path


def run_recorded(name: str, chat_server, tmp_path: Path):
    recorded = json.loads((REAL / name).read_text())
    chat_server.enqueue(Reply.from_recorded(REAL / name))
    flow = load_flow(flow_for(recorded, tmp_path))
    record = Engine(OpenAITransport(base_url=chat_server.base_url)).run(flow)
    return recorded, record


def flow_parameters(recorded: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d["parameters"] for d in declared(recorded["request"]) if d["name"] == name)


def recorded_calls(recorded: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(recorded["body"], str):  # a stream: the calls are spread over the events
        from flowrunner._stream import accumulate, iter_events

        message = accumulate(iter_events(recorded["body"].splitlines()))["choices"][0]["message"]
    else:
        message = recorded["body"]["choices"][0]["message"]
    if message.get("function_call"):
        fc = message["function_call"]
        return [(fc["name"], json.loads(fc["arguments"]))]
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls") or []]


@pytest.mark.server
@pytest.mark.parametrize("name", ["01-plain-answer-usage.json", "02-plain-answer-ratelimit-headers.json"])
def test_plain_answers(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path)
    assert record.status == "succeeded", record.error
    assert record.outputs == {"ask": recorded["body"]["choices"][0]["message"]["content"]}
    assert record.usage["total_tokens"] == recorded["body"]["usage"]["total_tokens"]
    assert record.steps[0].rounds[0].response_id == recorded["body"]["id"]


@pytest.mark.server
@pytest.mark.parametrize("name, protocol", [
    ("03-single-tool-call.json", "tool"),
    ("04-parallel-tool-calls.json", "tool"),
    ("05-legacy-function-call.json", "function"),
    ("06-stream-tool-call-with-usage.json", "tool"),
    ("07-stream-parallel-tool-calls.json", "tool"),
])
def test_function_calls(name, protocol, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path)
    assert record.status == "succeeded", record.error
    expected = recorded_calls(recorded)
    first, second = record.steps[0].rounds
    assert [(c.name, c.arguments) for c in first.calls] == expected
    # Real models break their own schemas: 05 sends `grades: 3.8` for an integer. Such a call goes
    # back to the model as an error; the others run.
    sent_back = []
    for call in first.calls:
        problem = validate_arguments(call.arguments, flow_parameters(recorded, call.name))
        if problem:
            assert problem in call.error and call.result is None
            sent_back.append(f"Error: invalid arguments for {call.name}: {problem}. Correct the call and try again.")
        else:
            assert call.error is None and call.result == {"echo": call.arguments}
            sent_back.append({"echo": call.arguments})
    assert second.finish_reason == "stop" and second.content
    # The follow-up carried the assistant's calls unchanged and one result per call, in order.
    follow_up = chat_server.requests[-1].body["messages"]
    results = [m for m in follow_up if m["role"] == protocol]
    assert [m["content"] if m["content"].startswith("Error") else json.loads(m["content"]) for m in results] == sent_back
    if protocol == "tool":
        asked = [c["id"] for c in follow_up[-len(results) - 1]["tool_calls"]]
        assert [m["tool_call_id"] for m in results] == asked == [c.id for c in first.calls]
    if recorded["request"].get("stream_options", {}).get("include_usage"):
        assert first.usage and first.usage["total_tokens"] > 0


@pytest.mark.server
def test_invalid_api_key(chat_server, tmp_path):
    recorded, record = run_recorded("08-error-401-invalid-api-key.json", chat_server, tmp_path)
    assert record.status == "failed"
    assert isinstance(record.exception, APIError) and record.exception.status == 401
    assert record.exception.code == "invalid_api_key"
    assert "Incorrect API key provided" in record.error["message"]
    assert "OPENAI_API_KEY" in record.error["message"]
    assert len(chat_server.requests) == 1  # never retried
