"""The transport: what the SDK hands back becomes a Completion or one of our errors, never a KeyError."""

from __future__ import annotations

import socket

import pytest

from flowrunner import APIConnectionError, APIError, OpenAITransport, ResponseError
from flowrunner._transport import parse_completion, status_error
from flowrunner.testing import Reply

from test_json import DEEP, LONG_INT

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Hello world"}]}


@pytest.mark.parametrize("body, message", [
    ([1, 2], "not a JSON object"),
    ({"id": "x"}, "has no choices"),
    ({"choices": []}, "has no choices"),
    ({"choices": ["text"]}, "has no choices"),
    ({"choices": [{"index": 0}]}, "without a message"),
    ({"choices": [{"message": {"content": 5}}]}, "content should be a string"),
    ({"choices": [{"message": {"content": None, "tool_calls": [{"id": "c"}]}}]}, "has no function"),
    ({"choices": [{"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}, "no function name"),
    ({"choices": [{"message": {"function_call": {"arguments": "{}"}}}]}, "has no name"),
    ({"choices": [{"message": {"content": None, "refusal": ["no"]}}]}, "refusal should be a string"),
    ({"choices": [{"message": {"content": None, "audio": "UklGR"}}]}, "audio should be an object"),
    ({"choices": [{"message": {"content": None, "audio": {"transcript": {"text": "hi"}}}}]}, "with a text transcript"),
])
def test_malformed_completions_are_response_errors(body, message):
    with pytest.raises(ResponseError, match=message):
        parse_completion(body)


def test_error_object_in_a_200_body_is_an_api_error():
    with pytest.raises(APIError, match="overloaded"):
        parse_completion({"error": {"message": "overloaded", "type": "server_error"}})


def test_assistant_message_keeps_calls_and_drops_response_extras():
    completion = parse_completion({"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "refusal": None, "annotations": [],
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]})
    assert completion.message == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}


@pytest.mark.parametrize("status, body, expected", [
    (401, {"message": "Incorrect API key provided", "code": "invalid_api_key"}, "OPENAI_API_KEY"),
    (404, {"message": "The model `x` does not exist", "code": "model_not_found"}, "model name"),
    (500, None, "HTTP 500: fallback"),
])
def test_status_errors_carry_code_and_hint(status, body, expected):
    error = status_error(status, body, "req_1", "fallback")
    assert expected in str(error)
    assert (error.status, error.request_id) == (status, "req_1")


@pytest.mark.server
@pytest.mark.parametrize("reply, error, message", [
    (Reply(status=200, body="<html>Bad gateway</html>", content_type="text/html"), ResponseError, "not JSON"),
    (Reply(status=502, body="<html>Bad gateway</html>", content_type="text/html"), APIError, "HTTP 502"),
    (Reply(status=200, body={"object": "list", "data": []}), ResponseError, "has no choices"),
    (Reply(status=503, body={"error": {"message": "The engine is currently overloaded", "type": "server_error",
                                        "param": None, "code": None}}), APIError, "overloaded"),
    # A content-encoding the body does not have: httpx's DecodingError was a traceback.
    (Reply(status=200, body={"id": "x", "choices": []}, headers={"content-encoding": "gzip"}), ResponseError,
     "could not be decoded as its content-encoding says"),
])
def test_odd_server_answers(chat_server, reply, error, message):
    chat_server.enqueue(reply)
    with pytest.raises(error, match=message):
        OpenAITransport(base_url=chat_server.base_url).complete(REQUEST)


@pytest.mark.server
def test_a_stream_that_is_not_the_encoding_it_claims_is_a_response_error(chat_server):
    chat_server.enqueue(Reply(status=200, body='data: {"choices": []}\n\ndata: [DONE]\n\n',
                              content_type="text/event-stream", headers={"content-encoding": "gzip"}))
    with pytest.raises(ResponseError, match="could not be decoded as its content-encoding says"):
        OpenAITransport(base_url=chat_server.base_url).complete({**REQUEST, "stream": True})


@pytest.mark.server
def test_answer_and_headers_from_the_server(chat_server):
    completion = OpenAITransport(base_url=chat_server.base_url).complete(REQUEST)
    assert completion.content and completion.finish_reason == "stop"
    assert completion.headers.get("x-request-id")
    assert chat_server.requests[0].body == REQUEST


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(APIConnectionError, match=f"no answer from http://127.0.0.1:{port}/v1"):
        OpenAITransport(base_url=f"http://127.0.0.1:{port}/v1", timeout=5).complete(REQUEST)


def test_a_request_that_never_left_is_not_reported_sent():
    # The rate limiter paces from a request's departure, and a batch counts the requests sent: a
    # connection refused sent nothing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sent: list[bool] = []
    with pytest.raises(APIConnectionError):
        OpenAITransport(base_url=f"http://127.0.0.1:{port}/v1", timeout=5).complete(REQUEST, on_sent=lambda: sent.append(True))
    assert sent == []


@pytest.mark.server
def test_a_request_is_reported_sent_once_written_whole(chat_server):
    written: list[int] = []
    with OpenAITransport(base_url=chat_server.base_url) as transport:
        transport.complete(REQUEST, on_sent=lambda: written.append(len(chat_server.requests)))
        transport.complete(REQUEST, on_sent=lambda: written.append(len(chat_server.requests)))
    assert len(written) == 2 and written[0] <= 1 and written[1] <= 2  # once each, before the answer


@pytest.mark.server
def test_a_streamed_answer_folds_into_the_same_completion(chat_server):
    transport = OpenAITransport(base_url=chat_server.base_url)
    tools = [{"type": "function", "function": {"name": "get_current_weather", "description": "Get the weather",
                                               "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]
    for request in (REQUEST, {**REQUEST, "messages": [{"role": "user", "content": "Weather in Boston and Oslo?"}],
                              "tools": tools}):
        plain = transport.complete(request)
        streamed = transport.complete({**request, "stream": True, "stream_options": {"include_usage": True}})
        assert streamed.message == plain.message
        assert (streamed.id, streamed.finish_reason, streamed.usage) == (plain.id, plain.finish_reason, plain.usage)
    assert len(plain.tool_calls) == 2


WARM_THEN_ASK = """
import sys
from flowrunner import OpenAITransport
from flowrunner.testing import ChatServer

with ChatServer() as server:
    transport = OpenAITransport(base_url=server.base_url)
    transport.warm()
    before = set(sys.modules)
    transport.complete({"model": "m", "messages": [{"role": "user", "content": "Hello world"}]})
    print(sorted(name for name in set(sys.modules) - before if name.startswith("openai")))
"""


@pytest.mark.server
def test_warm_leaves_the_first_request_no_sdk_module_to_import():
    # A fresh interpreter, since this one has imported the SDK's chat resources already. Left to the
    # first request, that import (~30 ms) delays it behind the limiter's schedule, and the requests
    # a window later, on time, land less than a window after it: a 429 at 1,200 RPM over 1 s.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WARM_THEN_ASK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_key_comes_from_openai_api_key_and_is_a_secret(monkeypatch):
    from flowrunner._secrets import redact
    from flowrunner.testing import ChatServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-from-the-environment")
    with ChatServer(api_key="sk-test-from-the-environment") as server, \
            OpenAITransport(base_url=server.base_url) as transport:  # as the SDK does: no key argument needed
        assert transport.complete(REQUEST).content
    assert redact("key sk-test-from-the-environment") == "key [redacted:OPENAI_API_KEY]"


PASSWORD = "pw-s3cr3t-0042"
QUERY_KEY = "qk-s3cr3t-0987"


@pytest.mark.server
def test_credentials_in_the_base_url_are_in_neither_the_cassette_nor_an_error(chat_server, make_flow, tmp_path, capsys):
    import base64
    import json

    from flowrunner._cli import main

    from conftest import FLOWS

    base_url = chat_server.base_url.replace("http://", f"http://alice:{PASSWORD}@")
    cassette = tmp_path / "c.yaml"
    code = main(["run", str(FLOWS / "hello.yaml"), "--base-url", base_url, "--cassette", str(cassette), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert chat_server.requests[0].headers["authorization"] == f"Basic {basic}"  # they were sent
    text = cassette.read_text()
    assert PASSWORD not in text and "alice" not in text and basic not in text
    assert f"uri: http://****@127.0.0.1:{chat_server.port}/v1/chat/completions" in text
    code = main(["run", str(FLOWS / "hello.yaml"), "--cassette", str(cassette), "--record-mode", "none", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["outputs"] == json.loads(out)["outputs"]

    with socket.socket() as s:  # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    once = make_flow((FLOWS / "hello.yaml").read_text().replace("steps:", "retry: {max_attempts: 1}\nsteps:"))
    code = main(["run", str(once.path), "--base-url",
                 f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1?api-key={QUERY_KEY}", "--json", "--timeout", "10s"])
    out, err = capsys.readouterr()
    assert code == 1
    message = json.loads(out)["error"]["message"]
    assert message.startswith(f"no answer from http://****@127.0.0.1:{port}/v1?api-key=****")
    for where in (out, err):
        assert PASSWORD not in where and QUERY_KEY not in where


@pytest.mark.parametrize("url, shown, registered", [
    ("http://alice:pw@host:8000/v1", "http://****@host:8000/v1", ["alice:pw"]),  # "pw" alone is too short
    ("https://TOKEN123@host/v1", "https://****@host/v1", ["TOKEN123"]),
    ("https://host/v1?api-version=2024-06-01&api-key=abcd1234", "https://host/v1?api-version=2024-06-01&api-key=****",
     ["abcd1234"]),
    ("https://host/v1?key=abcd&sig=xyz&x=1", "https://host/v1?key=****&sig=****&x=1", ["abcd"]),
    ("https://user:p%40ss@host/v1/path@thing", "https://****@host/v1/path@thing", ["p@ss", "p%40ss"]),
    ("http://localhost:11434/v1", "http://localhost:11434/v1", []),
    ("https://api.openai.com/v1", "https://api.openai.com/v1", []),
])
def test_a_base_url_is_shown_without_its_credentials(url, shown, registered):
    from flowrunner._secrets import redact, redact_url

    assert redact_url(url) == shown
    assert OpenAITransport(base_url=url).scope == shown
    for secret in registered:  # and its credentials are secrets: an echo of one is redacted anywhere
        assert redact(f"echo {secret}.") == "echo [redacted:base-url]."


@pytest.mark.server
@pytest.mark.parametrize("body, reason", [
    ('{"id": "x", "choices": ' + DEEP + "}", "nested deeper than 100 levels"),
    ('{"id": "x", "created": ' + LONG_INT + ', "choices": []}', "a number of 5,000 digits"),
    ('{"id": "x", "created": NaN, "choices": []}', "NaN is not a JSON number"),
], ids=["deep", "long-int", "nan"])
def test_an_answer_body_json_cannot_hold_is_a_response_error(chat_server, body, reason):
    chat_server.enqueue(Reply(body=body, content_type="application/json"))
    with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
        with pytest.raises(ResponseError, match=f"the server's answer is not JSON \\({reason}"):
            transport.complete(REQUEST)


@pytest.mark.server
@pytest.mark.parametrize("body", ['{"error": ' + DEEP + "}", '{"error": {"code": ' + LONG_INT + "}}"],
                         ids=["deep", "long-int"])
def test_an_error_body_json_cannot_hold_is_still_the_status_error(chat_server, body):
    import gc

    chat_server.enqueue(Reply(status=400, body=body, content_type="application/json"))
    # The SDK parses an error body itself, recursing to the stack's limit on a deep one; a collection
    # there runs earlier tests' finalizers at that depth, whose "Exception ignored" pytest makes an
    # error. They are collected first, and none is run during the call.
    gc.collect()
    gc.disable()
    try:
        with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
            with pytest.raises(APIError, match="HTTP 400") as caught:
                transport.complete(REQUEST)
    finally:
        gc.enable()
    assert caught.value.status == 400 and len(str(caught.value)) < 400


@pytest.mark.server
def test_transports_share_one_tls_context_instead_of_loading_certificates_each(chat_server, monkeypatch):
    # Loading the certificate store took ~25 ms per transport, even for an http:// server (a `flowrun test`
    # case, a library user's transport per call).
    import ssl

    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations",
                        lambda self, *args, **kwargs: loads.append(args) or real(self, *args, **kwargs))
    first = OpenAITransport(base_url=chat_server.base_url)
    first.complete({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    loads.clear()
    with OpenAITransport(base_url=chat_server.base_url) as second:
        completion = second.complete({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert completion.content
    assert loads == []
    first.close()
