"""A flow's inputs: typed on the command line, parsed as their declared type and refused in words; read
from the environment (`env:`), secrets whatever their type: an object's or array's strings, a long enough
number, and the whole value in the run record's inputs."""

from __future__ import annotations

import json

import pytest

from flowrunner import InputError
from flowrunner._cli import main
from flowrunner._inputs import resolve_inputs

from test_scrub import readable

PASSWORD = "hunter2-very-secret-pw"

ENV_FLOW = """
    name: envs
    model: gpt-4o-mini
    inputs:
      value: {type: %s, env: FLOWRUNNER_TEST_VALUE}
    steps:
      - id: echo
        messages: [{role: user, content: "%s"}]
"""


@pytest.mark.server
@pytest.mark.parametrize("kind, env, message, secrets, answer", [
    ("object", json.dumps({"user": "bob", "password": PASSWORD}),
     "Log in as {{ inputs.value.user }} with {{ inputs.value.password }}", [PASSWORD],
     "You said: Log in as bob with [redacted:FLOWRUNNER_TEST_VALUE]"),
    ("array", '["key-one-1111", "key-two-2222"]', "Use {{ inputs.value[1] }} or {{ inputs.value[0] }}",
     ["key-one-1111", "key-two-2222"],
     "You said: Use [redacted:FLOWRUNNER_TEST_VALUE] or [redacted:FLOWRUNNER_TEST_VALUE]"),
    ("integer", "48213907", "My PIN is {{ inputs.value }}", ["48213907"],
     "You said: My PIN is [redacted:FLOWRUNNER_TEST_VALUE]"),
    # Too short to be worth hiding in text (every 3 in every count and id would go), but not shown as the input.
    ("integer", "3", "Try {{ inputs.value }} times, 3 at most", [],
     "You said: Try 3 times, 3 at most"),
    # true and false are everywhere in JSON: never registered as text.
    ("boolean", "true", "It is {{ inputs.value | lower }}, true", [], "You said: It is true, true"),
], ids=["object", "array", "long-integer", "short-integer", "boolean"])
def test_an_env_input_of_any_type_is_redacted_in_the_record_and_the_cassette(
        make_flow, chat_server, tmp_path, capsys, monkeypatch, kind, env, message, secrets, answer):
    monkeypatch.setenv("FLOWRUNNER_TEST_VALUE", env)
    flow = make_flow(ENV_FLOW % (kind, message))
    cassette = tmp_path / "c.yaml"
    code = main(["run", str(flow.path), "--base-url", chat_server.base_url, "--cassette", str(cassette), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    sent = chat_server.requests[0].body["messages"][0]["content"]
    assert all(secret in sent for secret in secrets)  # the server really got them
    record = json.loads(out)
    assert record["inputs"] == {"value": "[redacted:FLOWRUNNER_TEST_VALUE]"}
    assert record["outputs"] == {"echo": answer}
    everything = readable(cassette)
    for secret in secrets:
        assert secret not in out and secret not in err and secret not in everything
    assert record["usage"]["total_tokens"] > 0  # counts are numbers still, whatever was registered


FLOW = """
    model: m
    inputs:
      n: {type: integer}
    steps:
      - id: a
        messages: [{role: user, content: "{{ inputs.n }}"}]
"""


def test_a_number_with_more_digits_than_python_reads_is_an_input_error(make_flow):
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow(FLOW), {"n": "1" * 5000}, from_text=True)
    assert str(info.value) == ("input 'n' expects integer, and '1111111111111111111111111111111111111111...' "
                               "(5,000 characters) is not one (a number of 5,000 digits, more than the 4,300 a number may have; "
                               "write it as JSON, e.g. 3)")


def test_a_long_value_that_is_not_json_is_quoted_clipped(make_flow):
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow(FLOW), {"n": "x" * 50_000}, from_text=True)
    assert str(info.value) == ("input 'n' expects integer, and 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' "
                               "(50,000 characters) is not one (Expecting value; write it as JSON, e.g. 3)")
    with pytest.raises(InputError, match=r"^input 'n' expects integer, and 'two' is not one \(Expecting value; write it as JSON"):
        resolve_inputs(make_flow(FLOW), {"n": "two"}, from_text=True)
