"""A base URL without http(s) is refused before anything is sent, with the URL it most likely means."""

from __future__ import annotations

import pytest

from flowrunner._exceptions import ConfigError
from flowrunner._transport import OpenAITransport
from flowrunner._urls import suggest
from flowrunner.testing import ChatServer

from test_cli import flowrun


@pytest.mark.server
@pytest.mark.parametrize("env", [False, True], ids=["--base-url", "OPENAI_BASE_URL"])
def test_a_base_url_without_a_scheme_exits_2_at_once_with_the_fixed_url(chat_server: ChatServer, env: bool):
    bare = chat_server.base_url.removeprefix("http://")  # 127.0.0.1:PORT/v1
    if env:
        done = flowrun("flows/hello.yaml", OPENAI_BASE_URL=bare)
        hint = f"hint: export OPENAI_BASE_URL={chat_server.base_url}"
    else:
        done = flowrun("flows/hello.yaml", "--base-url", bare)
        hint = f"hint: --base-url {chat_server.base_url}"
    assert done.returncode == 2, done.stderr
    assert f"{bare!r} is not an http:// or https:// URL" in done.stderr and hint in done.stderr
    assert "Traceback" not in done.stderr and "retrying" not in done.stderr
    assert chat_server.requests == []


def test_the_transport_refuses_such_a_url_and_hides_its_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAITransport(base_url="user:s3cret-pass@example.com/v1")
    assert "s3cret-pass" not in str(info.value) and "https://****@example.com/v1" in str(info.value)
    for good in ("http://127.0.0.1:8000/v1", "HTTPS://api.example.com/v1", None):
        OpenAITransport(base_url=good)


@pytest.mark.parametrize(("given", "meant"), [
    ("127.0.0.1:18765/v1", "http://127.0.0.1:18765/v1"),
    ("localhost:11434/v1", "http://localhost:11434/v1"),
    ("api.example.com/v1", "https://api.example.com/v1"),
    ("http//localhost:8000/v1", "http://localhost:8000/v1"),
    ("http:/127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("ftp://example.com/v1", "https://example.com/v1"),
    ("httpbin.org/v1", "https://httpbin.org/v1"),
])
def test_suggest(given: str, meant: str):
    assert suggest(given) == meant
