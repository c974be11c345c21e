"""Cassettes: matching, recording against the test server, replaying with no network, no secrets."""

from __future__ import annotations

import functools

import pytest
import yaml
from vcr.request import Request

from flowrunner import CassetteMissError, ConfigError, Engine, OpenAITransport, load_flow, use_cassette
from flowrunner._cassette import first_difference, json_body_matcher
from flowrunner.testing import ChatServer, Reply

from conftest import DATA, FLOWS

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
    assert replayed.to_dict() == live.to_dict()
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
