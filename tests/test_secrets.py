"""Secrets (the API key, values read with `env:`) never reach run records, logs, errors or cassettes,
and templates cannot read the environment or files on their own."""

from __future__ import annotations

import json

import pytest

from flowrunner import Engine, FunctionTransport, TemplateError
from flowrunner._cli import main
from flowrunner._secrets import StreamRedactor, forget_all, redact, redact_data, register, split_unsure

TOKEN = "tok-4242-very-secret"
KEY = "sk-test-0123456789abcdef"

FLOW = """
    name: secret
    model: gpt-4o-mini
    inputs:
      token: {type: string, env: FLOWRUNNER_TEST_TOKEN}
    functions:
      lookup_account:
        entry: tools:lookup_account
        description: Look up the customer's account
        parameters: {type: object, properties: {}}
    steps:
      - id: first
        messages: [{role: user, content: "Remember {{ inputs.token }}"}]
      - id: second
        messages: [{role: user, content: "lookup the account please"}]
        functions: [lookup_account]
    outputs:
      first: "{{ steps.first.content }}"
      second: "{{ steps.second.content }}"
"""

TOOLS = """
    import os

    def lookup_account():
        return {"account": os.environ["FLOWRUNNER_TEST_TOKEN"]}
"""


def test_redaction_basics():
    register("abc", "SHORT")  # too short to be worth hiding: would wreck records
    register("hunter22", "PW")
    register("hunter22-and-more", "LONGER")
    assert redact("pw hunter22, hunter22-and-more") == "pw [redacted:PW], [redacted:LONGER]"
    assert redact_data({"hunter22": ["x hunter22", 3]}) == {"[redacted:PW]": ["x [redacted:PW]", 3]}
    assert redact("abc") == "abc"
    forget_all()
    assert redact("hunter22") == "hunter22"


def test_record_log_error_and_cassette_hold_no_secret(make_flow, chat_server, tmp_path, capsys, monkeypatch):
    flow = make_flow(FLOW, tools=TOOLS)
    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cassette = tmp_path / "secret.yaml"
    code = main(["run", str(flow.path), "--base-url", chat_server.base_url, "--cassette", str(cassette), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # The server really got (and echoed) the secret: otherwise this test would prove nothing.
    sent = json.dumps([r.body for r in chat_server.requests])
    assert TOKEN in sent
    assert chat_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    record = json.loads(out)
    assert record["outputs"] == {"first": "You said: Remember [redacted:FLOWRUNNER_TEST_TOKEN]",
                                 "second": "lookup_account: account [redacted:FLOWRUNNER_TEST_TOKEN]."}
    assert "[redacted:FLOWRUNNER_TEST_TOKEN]" in err  # the call log line shows the redacted result
    text = cassette.read_text()
    for where in (out, err, text):
        assert TOKEN not in where and KEY not in where
    assert text.count("[redacted:FLOWRUNNER_TEST_TOKEN]") >= 4  # requests and responses of both steps

    # The redacted cassette still replays: the live request is redacted the same way before matching.
    forget_all()
    code = main(["run", str(flow.path), "--cassette", str(cassette), "--record-mode", "none", "--json"])
    replay_out, replay_err = capsys.readouterr()
    assert code == 0, replay_err
    assert json.loads(replay_out)["outputs"] == record["outputs"]


def test_errors_are_redacted(make_flow, capsys, monkeypatch):
    flow = make_flow(FLOW.replace("type: string, env", "type: integer, env"), tools=TOOLS)
    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code = main(["run", str(flow.path), "--base-url", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err
    assert code == 2 and "input 'token' expects integer, and '[redacted:FLOWRUNNER_TEST_TOKEN]'" in err
    assert TOKEN not in err


def test_a_failed_runs_error_is_redacted(make_flow, monkeypatch):
    flow = make_flow(FLOW, tools=TOOLS)
    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)

    def server(request):
        raise TemplateError(f"something mentioning {TOKEN}")

    record = Engine(FunctionTransport(server)).run(flow)
    assert record.status == "failed"
    assert TOKEN not in record.error["message"] and TOKEN not in str(record.exception)


@pytest.mark.parametrize("source", [
    "{{ env }}", "{{ environ }}", "{{ os.environ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__ }}", "{{ cycler.__init__.__globals__.os.environ }}", "{% include '/etc/passwd' %}",
    "{{ self._TemplateReference__context }}", "{{ range.__self__ }}",
])
def test_templates_cannot_reach_the_environment_or_files(make_flow, monkeypatch, source):
    from flowrunner import FlowValidationError

    monkeypatch.setenv("FLOWRUNNER_TEST_TOKEN", TOKEN)
    text = FLOW.replace('"Remember {{ inputs.token }}"', json.dumps(source))
    try:
        flow = make_flow(text, tools=TOOLS)
    except FlowValidationError:
        return  # refused when the flow is loaded: the best outcome
    record = Engine(FunctionTransport(lambda r: pytest.fail(f"sent: {r}"))).run(flow)
    assert record.status == "failed"
    assert TOKEN not in json.dumps(record.to_dict()) and "root:" not in json.dumps(record.to_dict())


def test_a_secret_split_between_streamed_pieces_is_still_redacted():
    register("sk-live-0123456789", "OPENAI_API_KEY")
    text = "the key is sk-live-0123456789, and sk-live is its prefix; sk-"
    for cut in range(1, len(text)):
        for second in range(cut + 1, len(text) + 1):
            stream = StreamRedactor()
            shown = [stream.feed(text[:cut]), stream.feed(text[cut:second]), stream.feed(text[second:]), stream.flush()]
            assert "".join(shown) == redact(text), (cut, second)
            assert "sk-live-0123456789" not in "".join(shown)


def test_only_a_possible_start_of_a_secret_is_held_back():
    register("sk-live-0123456789", "OPENAI_API_KEY")
    stream = StreamRedactor()
    assert stream.feed("Hello, wor") == "Hello, wor"  # nothing here could begin the key
    assert stream.feed("ld: sk-li") == "ld: "
    assert stream.feed("on") == "sk-lion"
    assert split_unsure("a secret: sk-live-01") == ("a secret: ", "sk-live-01")


ECHO_FLOW = """
    name: echo
    model: gpt-4o-mini
    retry: {max_attempts: 2, backoff: {initial: 1ms, max: 2ms}}
    functions:
      remember:
        entry: tools:remember
        parameters: {type: object, properties: {text: {type: string}}, required: [text]}
    steps:
      - id: first
        messages: [{role: user, content: "Which key do I use?"}]
        functions: [remember]
      - id: second
        messages: [{role: user, content: "And now?"}]
"""

ECHO_TOOLS = """
    def remember(text):
        return {"remembered": text}
"""


def test_the_api_key_echoed_by_the_server_is_redacted_in_the_record_the_log_and_the_error(
        make_flow, capsys, monkeypatch):
    from flowrunner.testing import ChatServer, Reply, error_reply, faults

    flow = make_flow(ECHO_FLOW, tools=ECHO_TOOLS)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    call = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "remember", "arguments": json.dumps({"text": KEY})}}]}
    tool_round = Reply(body={**faults.completion().body, "choices": [
        {"index": 0, "message": call, "logprobs": None, "finish_reason": "tool_calls"}]})
    with ChatServer(api_key=KEY) as server:  # the server insists on the key: it really was sent
        server.enqueue(tool_round, faults.completion(f"Your key is {KEY}, keep it safe."),
                       error_reply(500, f"Internal error while checking key {KEY}.", kind="server_error"),
                       error_reply(400, f"Invalid request for key {KEY}: try another.", code="invalid_value"))
        code = main(["run", str(flow.path), "--base-url", server.base_url, "--json"])
        sent = server.requests
    out, err = capsys.readouterr()
    assert code == 1, err
    assert len(sent) == 4 and all(r.headers["authorization"] == f"Bearer {KEY}" for r in sent)
    assert KEY in sent[1].raw.decode()  # the function's result went back to the server, key and all

    record = json.loads(out)
    first, second = record["steps"]
    assert first["content"] == "Your key is [redacted:OPENAI_API_KEY], keep it safe."
    assert first["rounds"][0]["calls"][0]["arguments"] == {"text": "[redacted:OPENAI_API_KEY]"}
    assert first["rounds"][0]["calls"][0]["result"] == {"remembered": "[redacted:OPENAI_API_KEY]"}
    assert second["status"] == "failed"
    assert record["error"]["message"].startswith(
        "HTTP 400 invalid_value: Invalid request for key [redacted:OPENAI_API_KEY]: try another.")
    assert [a["message"] for a in second["rounds"][0]["attempts"]] == [
        "HTTP 500: Internal error while checking key [redacted:OPENAI_API_KEY].",
        "HTTP 400 invalid_value: Invalid request for key [redacted:OPENAI_API_KEY]: try another."]

    lines = err.splitlines()
    assert any(line.startswith('  [first] remember({"text": "[redacted:OPENAI_API_KEY]"}) -> '
                               '{"remembered": "[redacted:OPENAI_API_KEY]"}') for line in lines), err
    assert any(line.startswith("  [second] retrying in ") and line.endswith(
        "after HTTP 500: Internal error while checking key [redacted:OPENAI_API_KEY].") for line in lines), err
    assert any(line.startswith("error in step 'second': HTTP 400 invalid_value: Invalid request for key "
                               "[redacted:OPENAI_API_KEY]") for line in lines), err
    assert KEY not in out and KEY not in err


def test_pieces_of_a_text_are_rewritten_to_join_into_the_redacted_text():
    from flowrunner._secrets import redact_pieces

    register("sk-CANARYKEY-0123", "OPENAI_API_KEY")
    register("tok-4242", "TOKEN")
    text = "key=sk-CANARYKEY-0123 and tok-4242tok-4242, sk-CANARY"
    for cut in range(len(text) + 1):
        for second in range(cut, len(text) + 1):
            pieces = [text[:cut], text[cut:second], text[second:]]
            rewritten = redact_pieces(pieces)
            assert "".join(rewritten) == redact(text), (cut, second)
            assert len(rewritten) == 3
            # The mark is in the piece where the key starts (text[4]), and in no other.
            holder = 0 if 4 < cut else 1 if 4 < second else 2
            assert ["[redacted:OPENAI_API_KEY]" in piece for piece in rewritten] == [i == holder for i in range(3)]
    assert redact_pieces(["key=sk-CANARYK", "EY-0123 ok"]) == ["key=[redacted:OPENAI_API_KEY]", " ok"]
    assert redact_pieces(["a", "b"]) == ["a", "b"]


def test_overlapping_secrets_leave_no_part_of_either():
    register("abcd-1234", "FIRST")
    register("1234-wxyz", "SECOND")
    assert redact("x abcd-1234-wxyz y") == "x [redacted:FIRST] y"
    assert redact("1234-wxyz abcd-1234") == "[redacted:SECOND] [redacted:FIRST]"


def test_a_secret_is_also_redacted_as_json_writes_it():
    register("tök-geheim-42", "TOKEN")
    register('pa"ss\\word', "PASSWORD")
    assert redact(json.dumps({"t": "tök-geheim-42", "p": 'pa"ss\\word'})) == (
        '{"t": "[redacted:TOKEN]", "p": "[redacted:PASSWORD]"}')
