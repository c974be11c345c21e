"""flowrunner/view/_server.py over real HTTP on 127.0.0.1: the token, read-only, escaping, errors."""

from __future__ import annotations

import http.client
from typing import Any, Iterator

import pytest

from .conftest import EVIL, Runs
from flowrunner._exceptions import UsageError
from flowrunner.view import ViewServer

pytestmark = pytest.mark.server


@pytest.fixture
def server(runs: Runs) -> Iterator[ViewServer]:
    with runs.serve() as running:
        yield running


def request(server: ViewServer, path: str, *, method: str = "GET", cookie: bool = True,
            host: str | None = None) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Host": host or f"127.0.0.1:{server.port}"}
    if cookie:
        headers["Cookie"] = f"{server.cookie_name}={server.token}"
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_url(server, runs):
    status, headers, _ = request(server, f"/?token={server.token}&status=failed", cookie=False)
    assert status == 303
    assert headers["location"] == "/?status=failed"
    assert headers["set-cookie"].startswith(f"{server.cookie_name}={server.token};")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, _, body = request(server, "/?status=failed")
    assert status == 200 and f'data-id="{runs.ids["failed"]}"' in body


@pytest.mark.parametrize("path", ["/", "/run/{real}", "/diff?run={real}&run={tokyo}", "/static/view.css",
                                  "/?token=wrong", "/?token="])
def test_without_the_token_every_page_is_forbidden(server, runs, path):
    status, _, body = request(server, path.format(**runs.ids), cookie=False)
    assert status == 403
    assert "needs the token" in body and "weather" not in body


def test_a_wrong_cookie_is_forbidden(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/", headers={"Cookie": f"{server.cookie_name}=guess; other=1"})
    assert connection.getresponse().status == 403
    connection.close()


def test_another_host_name_is_refused_even_with_the_token(server):
    """A page on evil.example resolving to 127.0.0.1 (DNS rebinding) sends its own Host."""
    status, _, body = request(server, "/", host=f"evil.example:{server.port}")
    assert status == 403 and "weather" not in body
    assert request(server, "/", host=f"localhost:{server.port}")[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_it_is_read_only(server, method):
    status, headers, body = request(server, "/", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD" and "read-only" in body


def test_head_answers_the_headers_without_a_body(server, runs):
    status, headers, body = request(server, f"/run/{runs.ids['real']}", method="HEAD")
    assert status == 200 and body == "" and int(headers["content-length"]) > 1000


def test_pages_forbid_inline_scripts_and_framing(server):
    _, headers, _ = request(server, "/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_model_output_is_escaped_everywhere_it_shows(server, runs):
    evil = runs.ids["evil"]
    for path in (f"/run/{evil}", f"/diff?run={evil}&run={runs.ids['failed']}", "/?q=owned"):
        status, _, body = request(server, path)
        assert status == 200, path
        assert "<script>document" not in body and "<b>bold</b>" not in body and "<img src=x" not in body, path
    _, _, body = request(server, f"/run/{evil}")
    assert ("&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;&lt;img src=x onerror=&#34;document.title="
            "&#39;owned&#39;&#34;&gt; &amp; &lt;b&gt;bold&lt;/b&gt;") in body


def ids_in(body: str) -> list[str]:
    return [part.split('"')[0] for part in body.split('data-id="')[1:]]


def test_runs_list_filters_sorts_and_searches(server, runs):
    _, _, body = request(server, "/?status=failed")
    assert ids_in(body) == [runs.ids["failed"]]
    _, _, body = request(server, "/?flow=hello&sort=id&order=asc")
    assert ids_in(body) == [runs.ids["evil"], runs.ids["failed"]]
    _, _, body = request(server, "/?sort=id&order=desc")
    assert ids_in(body) == sorted(runs.ids.values(), reverse=True)
    _, _, body = request(server, "/?q=Tokyo")
    assert set(ids_in(body)) == {runs.ids[name] for name in ("real", "timed", "old", "tokyo")}
    _, _, body = request(server, "/?n=2")
    assert len(ids_in(body)) == 2


@pytest.mark.parametrize("path, status, words", [
    ("/run/zzzz", 404, "'zzzz' is not a run id"),
    ("/run/ffff", 404, "no run 'ffff'"),
    ("/run/", 404, "is not a run id"),
    ("/diff?run=aaaa", 400, "exactly two runs; 1 were picked"),
    ("/?status=sideways", 400, "No status"),
    ("/nothing", 404, "There is no page /nothing"),
    ("/static/../_server.py", 404, "no such file"),
    ("/static/view.py", 404, "no such file"),
    ("/?n=many", 200, "weather"),
])
def test_mistakes_get_a_page_that_says_so(server, path, status, words):
    got, headers, body = request(server, path)
    assert got == status and words.replace("'", "&#39;") in body
    assert "Traceback" not in body and headers["content-type"].startswith("text/html")


def test_a_failing_store_is_a_500_page_not_a_traceback(runs):
    class Broken:
        def get(self, id_or_prefix):
            raise RuntimeError("disk on fire")

    with ViewServer(Broken) as server:
        status, _, body = request(server, "/run/aaaa")
    assert status == 500 and "RuntimeError: disk on fire" in body


def test_a_port_in_use_is_a_usage_error(server, runs):
    with pytest.raises(UsageError, match=f"(?s)cannot serve on 127.0.0.1:{server.port}.*leave out --port"):
        ViewServer(lambda: None, port=server.port)


def test_the_static_files_are_served_with_their_types(server):
    status, headers, body = request(server, "/static/view.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and "addEventListener" in body
    assert request(server, "/static/view.css")[1]["content-type"].startswith("text/css")


def test_a_round_shows_the_messages_its_request_sent(server, runs):
    _, _, body = request(server, f"/run/{runs.ids['tokyo']}")
    messages = body.split('<ol class="messages">')
    assert len(messages) == 3  # each of the two rounds lists what it sent
    first, second = messages[1].split("</ol>")[0], messages[2].split("</ol>")[0]
    assert "What&#39;s the weather in Tokyo?" in first and 'class="message system"' in first
    assert 'class="message tool"' not in first  # the first request had no function result yet
    assert 'class="message assistant"' in second and 'class="message tool"' in second
