"""Structured output with `response_format: {type: json_object}`: the answer must be a JSON object, and one
that is not is sent back for repair (scripted completions, no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from flowrunner import Engine, FunctionTransport
from flowrunner._output import output_problem

from test_json import DEEP, LONG_INT

JSON_OBJECT = """
    model: m
    steps:
      - id: extract
        response_format: {type: json_object}
        messages: [{role: user, content: "Boston is 72 degrees"}]
    outputs:
      city: "{{ steps.extract.json.city }}"
"""


def answer(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-o", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def scripted(*texts: str) -> FunctionTransport:
    queue = list(texts)
    return FunctionTransport(lambda request: answer(queue.pop(0)))  # .requests: a copy of each request sent


@pytest.mark.parametrize("content, problem", [
    ('{"city": "Boston"}', None),
    ('```json\n{"city": "Boston"}\n```', None),
    ("[1, 2]", "the answer is JSON but not an object (list)"),
    ('"Boston"', "the answer is JSON but not an object (str)"),
    ("Boston, 72 degrees", "the answer is not valid JSON (Expecting value; it starts 'Boston, 72 degrees')"),
])
def test_json_object_wants_an_object(content, problem):
    assert output_problem(content, {"type": "json_object"}) == problem
    assert output_problem(content, {"type": "text"}) is None and output_problem(content, None) is None


def test_an_answer_that_is_not_an_object_is_repaired_until_it_is(make_flow):
    transport = scripted("[1, 2]", "Boston, 72 degrees", '{"city": "Boston", "temperature": 72}')
    record = Engine(transport).run(make_flow(JSON_OBJECT))
    assert record.status == "succeeded", record.error
    assert record.outputs == {"city": "Boston"}
    rounds = record.steps[0].rounds
    assert [r.invalid_output for r in rounds] == [
        "the answer is JSON but not an object (list)",
        "the answer is not valid JSON (Expecting value; it starts 'Boston, 72 degrees')", None]
    # Each repair request carries the rejected answer and what was wrong with it.
    first_repair = transport.requests[1]["messages"]
    assert first_repair[-2] == {"role": "assistant", "content": "[1, 2]"}
    assert first_repair[-1]["role"] == "user"
    assert first_repair[-1]["content"].startswith("Your answer was rejected: the answer is JSON but not an object (list).")
    assert transport.requests[1]["response_format"] == {"type": "json_object"}
    assert len(transport.requests) == 3


def test_with_repair_0_an_answer_that_is_not_an_object_fails_the_run(make_flow):
    flow = make_flow(JSON_OBJECT.replace("        response_format:", "        repair: 0\n        response_format:"))
    transport = scripted("[1, 2]", '{"city": "Boston"}')
    record = Engine(transport).run(flow)
    assert record.status == "failed" and record.error["type"] == "OutputError"
    assert record.error["message"].startswith(
        "step 'extract': the answer is JSON but not an object (list), after 0 repair requests")
    assert record.error["step"] == "extract" and len(transport.requests) == 1


def test_a_schema_pattern_ending_in_dollar_does_not_let_a_trailing_newline_through():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    assert output_problem('{"code": "BOS"}', response_format) is None
    assert output_problem('{"code": "BOS\\n"}', response_format) == \
        "the answer does not match the schema: code: 'BOS\\n' does not match '^[A-Z]{3}$'"


@pytest.mark.server
@pytest.mark.parametrize("content, reason", [
    ('{"x": ' + DEEP + "}", "nested deeper than 100 levels"),
    ('{"x": ' + LONG_INT + "}", "a number of 5,000 digits"),
], ids=["deep", "long-int"])
def test_structured_output_json_cannot_hold_is_an_output_problem(make_flow, chat_server, content, reason):
    from flowrunner import OpenAITransport
    from flowrunner.testing import faults

    chat_server.enqueue(faults.completion(content), faults.completion('{"city": "Boston"}'))
    with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
        record = Engine(transport).run(make_flow(JSON_OBJECT))
    assert record.status == "succeeded", record.error  # repaired
    assert record.steps[0].rounds[0].invalid_output.startswith(f"the answer is not valid JSON ({reason}")
    assert record.outputs == {"city": "Boston"}
