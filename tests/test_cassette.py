"""Cassettes: matching, recording against the test server, replaying with no network, no secrets."""

from __future__ import annotations

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
