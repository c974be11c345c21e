"""Every genuine OpenAI response in tests/data/real-responses, served over HTTP, through the engine.

Each test builds a flow offering the functions the original request offered (and asking for what it
asked: a response_format, a token limit, audio), has the test server answer the first request with
the recorded response (status, headers, body, streams included), and lets the server's rules answer
the follow-up after the function results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowrunner import (APIError, ContentFilterError, EmptyAnswerError, Engine, OpenAITransport, RefusalError,
                        TruncatedAnswerError, load_flow)
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


STEP_OPTIONS = ("response_format", "max_tokens", "max_completion_tokens", "logprobs")
EXTRA_BODY = ("modalities", "audio")  # not flow options: a flow asks for audio through extra_body


def flow_for(recorded: dict[str, Any], folder: Path, **step_keys: Any) -> Path:
    """A flow that makes the same kind of request as the recorded one; `step_keys` go on its step."""
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
    step.update({key: request[key] for key in STEP_OPTIONS if key in request})
    if any(key in request for key in EXTRA_BODY):
        step["extra_body"] = {key: request[key] for key in EXTRA_BODY if key in request}
    step.update(step_keys)
    flow["steps"] = [step]
    (folder / "echo_tools.py").write_text(ECHO)
    path = folder / "real.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return path


def run_recorded(name: str, chat_server, tmp_path: Path, **step_keys: Any):
    recorded = json.loads((REAL / name).read_text())
    chat_server.enqueue(Reply.from_recorded(REAL / name))
    flow = load_flow(flow_for(recorded, tmp_path, **step_keys))
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


# -- answers that are not plain text --------------------------------------------------------------

def sent_message(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded message; for a stream, its delta pieces joined here by hand (not by flowrunner's fold)."""
    if not isinstance(recorded["body"], str):
        return recorded["body"]["choices"][0]["message"]
    message: dict[str, Any] = {}
    for line in recorded["body"].splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[len("data: "):])["choices"]:
                for key in ("content", "refusal"):
                    if choice["delta"].get(key):
                        message[key] = message.get(key, "") + choice["delta"][key]
    return message


REFUSALS = ["09-refusal.json", "10-stream-refusal.json", "16-stream-refusal-logprobs.json"]


@pytest.mark.server
@pytest.mark.parametrize("name", REFUSALS)
def test_a_refusal_fails_the_step_with_its_text(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path)
    refusal = sent_message(recorded)["refusal"]
    assert record.status == "failed" and isinstance(record.exception, RefusalError)
    assert record.exception.refusal == refusal
    assert record.error["type"] == "RefusalError" and record.error["step"] == "ask"
    assert f"the model refused: {refusal}" in record.error["message"]
    assert "on_refusal: output" in record.error["message"]  # the hint names the way out
    assert record.outputs == {} and record.steps[0].content is None
    (round_,) = record.steps[0].rounds
    assert round_.refusal == refusal and round_.content is None
    assert record.to_dict()["steps"][0]["rounds"][0]["refusal"] == refusal
    assert len(chat_server.requests) == 1  # not sent back for repair, though the step has a response_format


@pytest.mark.server
@pytest.mark.parametrize("name", REFUSALS)
def test_on_refusal_output_makes_the_refusal_the_steps_answer(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path, on_refusal="output")
    refusal = sent_message(recorded)["refusal"]
    assert record.status == "succeeded", record.error
    assert record.outputs == {"ask": refusal} and record.steps[0].content == refusal
    assert record.steps[0].rounds[0].refusal == refusal  # the record still says it was a refusal
    assert len(chat_server.requests) == 1  # a refusal is not JSON, and is not sent back for repair


@pytest.mark.server
@pytest.mark.parametrize("name", ["11-length-cut.json", "12-stream-length-cut.json"])
def test_a_cut_answer_is_the_answer_but_the_record_says_it_was_cut(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path)
    text = sent_message(recorded)["content"]
    assert record.status == "succeeded", record.error
    assert record.outputs == {"ask": text}
    (step,) = record.steps
    assert step.rounds[0].finish_reason == "length"
    (warning,) = step.warnings
    assert "the answer was cut at the token limit (finish_reason: length, max_tokens: 50)" in warning
    assert "raise max_tokens" in warning and "on_length: fail" in warning
    assert record.to_dict()["steps"][0]["warnings"] == [warning]


@pytest.mark.server
@pytest.mark.parametrize("name", ["11-length-cut.json", "12-stream-length-cut.json"])
def test_on_length_fail_fails_the_step_on_a_cut_answer(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path, on_length="fail")
    assert record.status == "failed" and isinstance(record.exception, TruncatedAnswerError)
    assert record.error["step"] == "ask" and "max_tokens: 50" in record.error["message"]
    assert record.outputs == {}
    assert record.steps[0].rounds[0].content == sent_message(recorded)["content"]  # kept in the record


@pytest.mark.server
@pytest.mark.parametrize("name", ["13-reasoning-empty.json", "14-stream-reasoning-empty.json"])
def test_an_answer_left_empty_by_reasoning_fails_the_step_and_says_why(name, chat_server, tmp_path):
    recorded, record = run_recorded(name, chat_server, tmp_path)
    assert record.status == "failed" and isinstance(record.exception, EmptyAnswerError)
    message = record.error["message"]
    assert "the answer is empty: the model spent all 50 completion tokens reasoning" in message
    assert "raise max_completion_tokens (50 now)" in message and "reasoning_effort" in message
    assert record.outputs == {} and record.steps[0].content is None
    assert record.steps[0].rounds[0].usage["completion_tokens_details"]["reasoning_tokens"] == 50


@pytest.mark.server
def test_a_cut_structured_answer_fails_at_once_instead_of_being_sent_back_for_repair(chat_server, tmp_path):
    recorded, record = run_recorded("17-length-cut-structured.json", chat_server, tmp_path)
    assert record.status == "failed" and isinstance(record.exception, TruncatedAnswerError)
    assert "max_tokens: 1" in record.error["message"] and "response_format" in record.error["message"]
    assert len(chat_server.requests) == 1  # a repair request would be cut at the same limit


@pytest.mark.server
def test_a_spoken_answer_is_its_transcript_and_the_record_keeps_the_audio_but_not_its_data(chat_server, tmp_path):
    recorded, record = run_recorded("15-audio-answer.json", chat_server, tmp_path)
    audio = recorded["body"]["choices"][0]["message"]["audio"]
    assert record.status == "succeeded", record.error
    assert record.outputs == {"ask": audio["transcript"]} == {"ask": "beep"}
    (round_,) = record.steps[0].rounds
    assert round_.content is None
    assert round_.audio == {"id": audio["id"], "expires_at": audio["expires_at"], "transcript": "beep",
                            "data_omitted_chars": len(audio["data"])}
    assert audio["data"] not in json.dumps(record.to_dict())
    sent = chat_server.requests[0].body
    assert sent["modalities"] == ["text", "audio"] and sent["audio"] == {"format": "opus", "voice": "alloy"}
