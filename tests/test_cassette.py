"""Cassettes: matching, recording against the test server, replaying with no network, no secrets."""

from __future__ import annotations

import functools

import pytest
import yaml
from vcr.request import Request

from flowrunner import CassetteMissError, ConfigError, Engine, OpenAITransport, load_flow, use_cassette
from flowrunner._cassette import first_difference, json_body_matcher
from flowrunner._record import without_timing
from flowrunner.testing import ChatServer, Reply

from conftest import DATA, FLOWS
from test_json import DEEP, SURROGATE, raw_answer

URL = "http://127.0.0.1:1/v1/chat/completions"


def req(body: bytes) -> Request:
    return Request("POST", URL, body, {})


def test_body_matcher_ignores_key_order_and_spacing():
    json_body_matcher(req(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'),
                      req(b'{"messages":[{"content":"hi","role":"user"}],"model":"m"}'))


def test_body_matcher_says_where_bodies_differ():
    with pytest.raises(AssertionError, match=r"body.messages\[0\].content: recorded 'hi', now 'ho'"):
        json_body_matcher(req(b'{"messages": [{"content": "ho"}]}'), req(b'{"messages": [{"content": "hi"}]}'))


@pytest.mark.parametrize("recorded, live, expected", [
    ({"a": 1}, {"a": 1, "b": 2}, "body.b: new, not in the recording (2)"),
    ({"a": 1, "b": 2}, {"a": 1}, "body.b: recorded, now missing"),
    ({"a": [1, 2]}, {"a": [1]}, "body.a: recorded 2 items, now 1"),
    ({"a": "x"}, {"a": 3}, "body.a: recorded 'x', now 3"),
])
def test_first_difference(recorded, live, expected):
    assert first_difference(recorded, live) == expected


def run(flow_path, cassette, mode, base_url=None, api_key=None, **inputs):
    with use_cassette(cassette, mode):
        return Engine(OpenAITransport(base_url=base_url, api_key=api_key)).run(load_flow(flow_path), inputs)


@pytest.mark.server
@pytest.mark.parametrize("flow", ["weather.yaml", "summarize_translate.yaml", "legacy_functions.yaml"])
def test_record_then_replay_gives_identical_records(flow, chat_server, tmp_path):
    cassette = tmp_path / "c.yaml"
    live = run(FLOWS / flow, cassette, "all", base_url=chat_server.base_url)
    assert live.status == "succeeded", live.error
    sent = len(chat_server.requests)
    # Replay with no server address at all: the default is api.openai.com, unreachable here.
    replayed = run(FLOWS / flow, cassette, "none")
    assert without_timing(replayed.to_dict()) == without_timing(live.to_dict())
    assert len(chat_server.requests) == sent


@pytest.mark.server
def test_no_secret_or_noise_in_a_recorded_cassette(monkeypatch, tmp_path):
    key, org, project = "sk-live-secret-0123456789abcdef", "org-secret1234", "proj_secret1234"
    monkeypatch.setenv("OPENAI_ORG_ID", org)
    monkeypatch.setenv("OPENAI_PROJECT_ID", project)
    cassette = tmp_path / "c.yaml"
    with ChatServer(api_key=key) as server:
        reply = Reply.from_recorded(DATA / "real-responses" / "01-plain-answer-usage.json")
        reply.headers["set-cookie"] = "__cf_bm=secret-cookie; path=/"
        reply.headers["openai-organization"] = org
        server.enqueue(reply)
        record = run(FLOWS / "hello.yaml", cassette, "all", base_url=server.base_url, api_key=key)
        assert record.status == "succeeded", record.error
        sent = server.requests[0].headers
        # The secrets really were on the wire, so their absence below means something.
        assert sent["authorization"] == f"Bearer {key}" and sent["openai-organization"] == org
        assert any(h.startswith("x-stainless-") for h in sent)
    text = cassette.read_text()
    bodies = [i["response"]["body"]["string"] for i in yaml.safe_load(text)["interactions"]]
    for needle in (key, org, project, "secret-cookie"):
        assert needle not in text
    for header in ("authorization", "openai-organization", "openai-project", "user-agent", "x-stainless",
                   "set-cookie"):
        assert header not in text.lower()
    assert "Hello! I'm just a computer program" in bodies[0]  # bodies stay readable text, not gzip


@pytest.mark.server
def test_a_request_missing_from_the_cassette_says_what_changed(chat_server, tmp_path):
    cassette = tmp_path / "c.yaml"
    run(FLOWS / "weather.yaml", cassette, "all", base_url=chat_server.base_url)
    record = run(FLOWS / "weather.yaml", cassette, "none", question="What's the weather in Paris?")
    assert record.status == "failed"
    assert isinstance(record.exception, CassetteMissError)
    message = record.error["message"]
    assert str(cassette) in message
    assert "messages[1].content: recorded \"What's the weather in Boston?\"" in message
    assert "re-record" in message


def test_replay_only_needs_an_existing_cassette(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        with use_cassette(tmp_path / "missing.yaml", "none"):
            pass
    with pytest.raises(ConfigError, match="unknown record mode"):
        with use_cassette(tmp_path / "c.yaml", "sometimes"):
            pass


@pytest.mark.parametrize("content, message", [
    ("interactions: [\n", "is not a readable cassette: while parsing a flow node"),
    ("hello: 1\n", "is not a readable cassette: no 'interactions' in it"),
])
def test_a_broken_cassette_file_is_a_clear_error(tmp_path, content, message):
    cassette = tmp_path / "c.yaml"
    cassette.write_text(content)
    with pytest.raises(ConfigError, match=message):
        with use_cassette(cassette, "none"):
            pass


def damage(cassette, change):
    """A recorded cassette damaged as a hand edit, a bad merge or a cut-off copy leaves it: `change`
    alters its second interaction (the first is left sound, so the message must say which)."""
    data = yaml.safe_load(cassette.read_text())
    change(data["interactions"][1])
    cassette.write_text(yaml.safe_dump(data))
    return cassette


def record_weather(server, folder):
    cassette = folder / "weather.yaml"
    assert run(FLOWS / "weather.yaml", cassette, "once", base_url=server.base_url).status == "succeeded"
    return cassette


DAMAGES = [
    (lambda i: i["response"].pop("body"), "response: no 'body'"),
    (lambda i: i["response"].update(status="OK"),
     "response.status: expected a mapping such as {code: 200, message: OK}, got 'OK'"),
    (lambda i: i["response"]["status"].update(code="200"),
     "response.status.code: expected an HTTP status code (100 to 599), got '200'"),
    (lambda i: i["response"]["status"].pop("message"), "response.status: no 'message'"),
    (lambda i: i["response"]["status"].update(message="Ökay"),
     "response.status.message: expected ASCII text or null, got 'Ökay'"),
    (lambda i: i["response"].update(headers="x"),
     "response.headers: expected a mapping of header names to lists of values, got 'x'"),
    (lambda i: i["response"]["headers"].update({"x-thing": [3]}),
     "response.headers.x-thing[0]: expected text, got 3"),
    (lambda i: i["response"]["body"].update(string=5), "response.body.string: expected text, got 5"),
    (lambda i: i["request"].pop("body"), "request: no 'body'"),
    (lambda i: i["request"].update(uri=5), "request.uri: expected a URL, got 5"),
    (lambda i: i.pop("request"), "no 'request'"),
]


@pytest.mark.server
@pytest.mark.parametrize("change, what", DAMAGES)
def test_a_malformed_interaction_is_named_with_what_is_wrong_before_the_run(change, what, chat_server, tmp_path):
    cassette = damage(record_weather(chat_server, tmp_path), change)
    where = "interaction 2 of 2" + ("" if what in ("no 'request'", "request.uri: expected a URL, got 5")
                                    else " (POST /v1/chat/completions)")
    with pytest.raises(ConfigError) as info:
        run(FLOWS / "weather.yaml", cassette, "none")
    assert str(info.value) == (f"{cassette} is not a readable cassette: {where}: {what}\n  hint: delete it and "
                               "record it again, or point --cassette elsewhere")


@pytest.mark.server
def test_a_malformed_cassette_exits_2_from_run_and_batch_without_a_traceback(chat_server, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, clean_env

    cassette = damage(record_weather(chat_server, tmp_path), lambda i: i["response"].update(status="OK"))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"question": "What\'s the weather in Boston?"}\n')
    for command in (["run", "flows/weather.yaml"],
                    ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(tmp_path / "out.jsonl")]):
        done = subprocess.run([sys.executable, "-m", "flowrunner._cli", *command, "--cassette", str(cassette),
                               "--record-mode", "none"], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"error: {cassette} is not a readable cassette: interaction 2 of 2 (POST /v1/chat/completions): " \
               "response.status: expected a mapping" in done.stderr
        assert "Traceback" not in done.stderr


def test_an_empty_cassette_says_it_is_empty_not_that_the_flow_changed(tmp_path):
    cassette = tmp_path / "c.yaml"
    cassette.write_text("")  # a file with no recording in it (touched, or cut short), not a recording
    record = run(FLOWS / "hello.yaml", cassette, "none")
    assert isinstance(record.exception, CassetteMissError)
    message = record.error["message"]
    assert "the cassette is empty: it holds no recording at all" in message
    assert "hint: record it against a server: --record-mode all" in message and "changed" not in message


def test_a_cassette_path_that_cannot_be_written_is_said_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        with use_cassette(tmp_path, "once"):
            pass
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the cassette's folder"):
        with use_cassette(blocker / "sub" / "c.yaml", "all"):
            pass


def test_body_diff_shows_changed_lines_with_context():
    from flowrunner._cassette import body_diff

    recorded = {"model": "m", "messages": [{"role": "user", "content": "Boston"}]}
    live = {"model": "m", "messages": [{"role": "user", "content": "Paris"}]}
    assert body_diff(recorded, live) == [
        '     {', '-      "content": "Boston",', '+      "content": "Paris",', '       "role": "user"']
    assert body_diff(recorded, recorded) == []


def plain(text):
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                    "message": {"role": "assistant", "content": text, "refusal": None}}]})


@pytest.mark.server
def test_replay_finds_recordings_through_the_index_not_by_trying_each(chat_server, tmp_path, monkeypatch):
    import flowrunner._cassette as cassette_module

    cassette = tmp_path / "c.yaml"
    questions = [f"What's the weather in city{n}?" for n in range(20)]
    for question in questions:
        run(FLOWS / "weather.yaml", cassette, "new_episodes", base_url=chat_server.base_url, question=question)
    assert len(yaml.safe_load(cassette.read_text())["interactions"]) == 40
    calls = []
    real = cassette_module.json_body_matcher
    @functools.wraps(real)
    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(cassette_module, "json_body_matcher", counting)
    for question in reversed(questions):
        record = run(FLOWS / "weather.yaml", cassette, "none", question=question)
        assert f"location city{questions.index(question)}," in record.outputs["answer"]
    assert calls == []  # a scan would have called the matcher hundreds of times
    # A miss still goes through vcrpy's scan, to name the closest recording.
    record = run(FLOWS / "weather.yaml", cassette, "none", question="What's the weather in Lima?")
    assert "closest recording" in record.error["message"] and "differs in the body" in record.error["message"]
    assert calls


@pytest.mark.server
def test_identical_requests_replay_their_recordings_oldest_first_each_once(chat_server, tmp_path):
    cassette = tmp_path / "c.yaml"
    chat_server.enqueue(plain("first"), plain("second"))
    with use_cassette(cassette, "all"):
        transport = OpenAITransport(base_url=chat_server.base_url)
        live = [Engine(transport).run(load_flow(FLOWS / "hello.yaml")) for _ in range(2)]
    assert [r.outputs["reply"] for r in live] == ["first", "second"]
    with use_cassette(cassette, "none"):
        engine = Engine(OpenAITransport())
        replayed = [engine.run(load_flow(FLOWS / "hello.yaml")) for _ in range(3)]
    assert [r.outputs.get("reply") for r in replayed[:2]] == ["first", "second"]
    assert "was already played" in replayed[2].error["message"]


@pytest.mark.server
def test_re_recording_replaces_the_recordings_it_matches_and_keeps_the_rest(chat_server, tmp_path):
    cassette = tmp_path / "c.yaml"
    run(FLOWS / "hello.yaml", cassette, "all", base_url=chat_server.base_url)
    run(FLOWS / "weather.yaml", cassette, "new_episodes", base_url=chat_server.base_url)
    chat_server.enqueue(plain("re-recorded"))
    run(FLOWS / "hello.yaml", cassette, "all", base_url=chat_server.base_url)
    interactions = yaml.safe_load(cassette.read_text())["interactions"]
    assert len(interactions) == 3  # two weather rounds kept, hello replaced
    assert "re-recorded" in interactions[-1]["response"]["body"]["string"]
    assert run(FLOWS / "hello.yaml", cassette, "none").outputs["reply"] == "re-recorded"


@pytest.mark.server
def test_recording_an_answer_nested_100000_deep_with_a_key_set_fails_the_run_not_flowrun(chat_server, tmp_path):
    # With a key set, each recorded body is searched for it: that search read the body with Python's parser.
    key = "sk-live-secret-0123456789abcdef"
    chat_server.enqueue(Reply(body='{"choices": ' + DEEP + "}", content_type="application/json"))
    record = run(FLOWS / "hello.yaml", tmp_path / "c.yaml", "all", base_url=chat_server.base_url, api_key=key)
    assert record.status == "failed" and record.error["type"] == "ResponseError"
    assert "nested deeper than 100 levels" in record.error["message"]


@pytest.mark.server
def test_recording_an_answer_with_a_lone_surrogate_and_the_key_in_it_replays_it(chat_server, tmp_path):
    key = "sk-live-secret-0123456789abcdef"
    cassette = tmp_path / "c.yaml"
    chat_server.enqueue(raw_answer(f'"{SURROGATE} {key}"'))  # the body is rewritten without the key
    live = run(FLOWS / "hello.yaml", cassette, "all", base_url=chat_server.base_url, api_key=key)
    assert live.status == "succeeded", live.error
    assert live.outputs["reply"].startswith("hel\ud800lo ") and key not in live.outputs["reply"]
    assert key not in cassette.read_text()
    assert run(FLOWS / "hello.yaml", cassette, "none").outputs == live.outputs


def record_cities(server, cassette, count):
    for n in range(count):
        record = run(FLOWS / "weather.yaml", cassette, "new_episodes", base_url=server.base_url,
                     question=f"What's the weather in city{n}?")
        assert record.status == "succeeded", record.error


@pytest.mark.server
def test_reading_a_cassette_runs_no_garbage_collection_and_copies_nothing(chat_server, tmp_path, monkeypatch):
    # Each collection walks every object made so far, and vcrpy deep-copies every recording it reads:
    # together most of the time a 1,000-interaction cassette took to open (benchmarks/replay.py).
    import copy
    import gc

    cassette = tmp_path / "c.yaml"
    record_cities(chat_server, cassette, 10)
    copies, collections = [], []
    real = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda *args, **kwargs: copies.append(1) or real(*args, **kwargs))
    callback = lambda phase, info: collections.append(info) if phase == "start" else None  # noqa: E731
    gc.callbacks.append(callback)
    try:
        with use_cassette(cassette, "none") as opened:
            assert gc.isenabled() and len(opened.data) == 20
            loaded = (list(copies), list(collections))
    finally:
        gc.callbacks.remove(callback)
    assert loaded == ([], [])


@pytest.mark.server
def test_a_replayed_request_is_filtered_once_not_three_times(chat_server, tmp_path, monkeypatch):
    import flowrunner._cassette as cassette_module

    cassette = tmp_path / "c.yaml"
    record_cities(chat_server, cassette, 1)
    scrubbed = []
    real = cassette_module._scrub_request
    monkeypatch.setattr(cassette_module, "_scrub_request", lambda request: scrubbed.append(1) or real(request))
    record = run(FLOWS / "weather.yaml", cassette, "none", question="What's the weather in city0?")
    assert record.status == "succeeded", record.error
    assert len(scrubbed) == 2 + 2  # each recording as it is read, each of the two live requests
