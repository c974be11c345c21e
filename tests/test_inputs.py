"""Inputs read from the environment (`env:`) are secrets whatever their type: an object's or array's
strings, a long enough number, and the whole value in the run record's inputs."""

from __future__ import annotations

import json

import pytest

from flowrunner._cli import main

from test_scrub import readable

PASSWORD = "hunter2-very-secret-pw"

FLOW = """
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
    flow = make_flow(FLOW % (kind, message))
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
