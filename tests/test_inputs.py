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


# -- inputs from files and stdin, outputs to a file -------------------------------------------------

SUMMARIZE = "flows/summarize_translate.yaml"


@pytest.mark.server
def test_an_input_from_a_file_or_stdin_and_the_outputs_to_a_file(tmp_path):
    from flowrunner.testing import ChatServer

    from test_cli import flowrun

    notes = tmp_path / "notes.txt"
    notes.write_text("Cassettes record HTTP.\nThey replay it later.\n", encoding="utf-8")
    out = tmp_path / "out.json"
    with ChatServer() as server:
        from_file = flowrun(SUMMARIZE, "--base-url", server.base_url, "-i", f"text=@{notes}", "-o", str(out))
        from_stdin = flowrun(SUMMARIZE, "--base-url", server.base_url, "-i", "text=@-", "-i", "language=French",
                             stdin="Pipes carry text. Files hold it.")
        escaped = flowrun(SUMMARIZE, "--base-url", server.base_url, "-i", "text=@@home is a handle.")
        asked = [r.body["messages"][-1]["content"] for r in server.requests]
    assert from_file.returncode == from_stdin.returncode == escaped.returncode == 0, from_file.stderr
    assert "Cassettes record HTTP.\nThey replay it later.\n" in asked[0]
    assert json.loads(out.read_text()) == {"summary": "Cassettes record HTTP.",
                                           "translation": "[ko] Cassettes record HTTP."}
    assert "Pipes carry text. Files hold it." in asked[2] and "[fr] Pipes carry text." in from_stdin.stdout
    assert "@home is a handle." in asked[4] and "@@home" not in asked[4]


@pytest.mark.server
def test_inputs_from_a_json_file_with_i_on_top(tmp_path):
    from flowrunner.testing import ChatServer

    from test_cli import flowrun

    given = tmp_path / "inputs.json"
    given.write_text(json.dumps({"text": "Tests catch bugs. Early.", "language": "German"}))
    with ChatServer() as server:
        done = flowrun(SUMMARIZE, "--base-url", server.base_url, "--inputs", str(given), "-i", "language=Spanish")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "summary: Tests catch bugs.\ntranslation: [es] Tests catch bugs.\n"


@pytest.mark.server
@pytest.mark.parametrize("args, content, message", [
    (["-i", "text=@{big}"], b"x" * (10 * 1024 * 1024 + 1), "big.txt holds more than 10 MB, the limit for an input"),
    (["-i", "text=@-"], None, "stdin holds more than 10 MB"),
    (["-i", "text=@{big}"], b"caf\xe9", "input 'text': {big} is not UTF-8 text (byte 0xe9 at offset 3)"),
    (["-i", "text=@{tmp}/missing.txt"], None, "input 'text': file not found: {tmp}/missing.txt (for a value that "
                                               "starts with @, write @@{tmp}/missing.txt)"),
    (["-i", "text=@-", "-i", "language=@-"], None, "inputs 'text' and 'language' both read stdin"),
    (["--inputs", "{big}"], b'{"text": ', "--inputs {big}: not JSON (Expecting value at line 1, column 10)"),
    (["--inputs", "{big}"], b'["a"]', "--inputs {big}: expected a JSON object of the inputs, got a list"),
    (["--inputs", "{big}"], b'{"txt": "a"}', "has no input 'txt'; did you mean 'text'?"),
    (["-i", "text=hi", "-o", "{tmp}/no/such/out.json"], None, "-o {tmp}/no/such/out.json: the folder"),
])
def test_what_cannot_be_read_is_a_clear_usage_error_before_any_request(tmp_path, args, content, message):
    from flowrunner.testing import ChatServer

    from test_cli import flowrun

    big = tmp_path / "big.txt"
    if content is not None:
        big.write_bytes(content)
    args = [a.format(big=big, tmp=tmp_path) for a in args]
    stdin = "y" * (10 * 1024 * 1024 + 1) if args == ["-i", "text=@-"] else ""
    with ChatServer() as server:
        done = flowrun(SUMMARIZE, "--base-url", server.base_url, *args, stdin=stdin)
        assert server.requests == []
    assert done.returncode == 2 and message.format(big=big, tmp=tmp_path) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
