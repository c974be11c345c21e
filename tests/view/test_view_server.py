"""flowrunner/view/_server.py over real HTTP on 127.0.0.1: the token, read-only, escaping, errors."""

from __future__ import annotations

import http.client
from typing import Any, Iterator

import pytest

from conftest import ROOT, MemoryStore, run_flow, stored, with_timing
from flowrunner._exceptions import UsageError
from flowrunner._record import without_timing
from flowrunner.testing import faults
from flowrunner.view import ViewServer

pytestmark = pytest.mark.server
EVIL = "<script>alert('owned')</script> & <b>bold</b>"


@pytest.fixture(scope="module")
def store(weather_record: dict[str, Any]) -> MemoryStore:
    evil = run_flow(ROOT / "flows" / "hello.yaml", {}, faults.completion(EVIL))
    failed = run_flow(ROOT / "flows" / "hello.yaml", {}, faults.invalid_api_key())
    return MemoryStore([stored("aaaa1111", with_timing(weather_record)), stored("bbbb2222", without_timing(weather_record)),
                        stored("cccc3333", evil), stored("dddd4444", failed)])


@pytest.fixture
def server(store: MemoryStore) -> Iterator[ViewServer]:
    with ViewServer(lambda: store) as running:
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


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_url(server):
    status, headers, _ = request(server, f"/?token={server.token}&status=failed", cookie=False)
    assert status == 303
    assert headers["location"] == "/?status=failed"
    assert headers["set-cookie"].startswith(f"{server.cookie_name}={server.token};")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, _, body = request(server, "/?status=failed")
    assert status == 200 and "dddd4444"[:8] in body


@pytest.mark.parametrize("path", ["/", "/run/aaaa", "/diff?run=aaaa&run=bbbb", "/static/view.css",
                                  "/?token=wrong", "/?token="])
def test_without_the_token_every_page_is_forbidden(server, path):
    status, _, body = request(server, path, cookie=False)
    assert status == 403
    assert "needs the token" in body and "aaaa1111" not in body


def test_a_wrong_cookie_is_forbidden(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/", headers={"Cookie": f"{server.cookie_name}=guess; other=1"})
    assert connection.getresponse().status == 403
    connection.close()


def test_another_host_name_is_refused_even_with_the_token(server):
    """A page on evil.example resolving to 127.0.0.1 (DNS rebinding) sends its own Host."""
    status, _, body = request(server, "/", host=f"evil.example:{server.port}")
    assert status == 403 and "aaaa1111" not in body
    assert request(server, "/", host=f"localhost:{server.port}")[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_it_is_read_only(server, method):
    status, headers, body = request(server, "/", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD" and "read-only" in body


def test_head_answers_the_headers_without_a_body(server):
    status, headers, body = request(server, "/run/aaaa", method="HEAD")
    assert status == 200 and body == "" and int(headers["content-length"]) > 1000


def test_pages_forbid_inline_scripts_and_framing(server):
    _, headers, _ = request(server, "/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_model_output_is_escaped_everywhere_it_shows(server):
    for path in ("/run/cccc", "/diff?run=cccc&run=aaaa", "/?q=owned"):
        status, _, body = request(server, path)
        assert status == 200, path
        assert "<script>alert" not in body and "<b>bold</b>" not in body, path
    _, _, body = request(server, "/run/cccc")
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in body


def test_runs_list_filters_and_sorts(server):
    _, _, body = request(server, "/?status=failed")
    assert "dddd4444"[:8] in body and "aaaa1111"[:8] not in body
    _, _, body = request(server, "/?flow=weather&sort=id&order=asc")
    assert body.index("aaaa1111") < body.index("bbbb2222") and "cccc3333" not in body
    _, _, body = request(server, "/?sort=id&order=desc")
    assert body.index("dddd4444") < body.index("cccc3333") < body.index("aaaa1111")
    _, _, body = request(server, "/?q=Tokyo")
    assert "aaaa1111" in body and "cccc3333" not in body


@pytest.mark.parametrize("path, status, words", [
    ("/run/zzzz", 404, "no run 'zzzz'"),
    ("/run/", 404, "ambiguous"),
    ("/diff?run=aaaa", 400, "exactly two runs; 1 were picked"),
    ("/?status=sideways", 400, "No status"),
    ("/nothing", 404, "There is no page /nothing"),
    ("/static/../_server.py", 404, "no such file"),
    ("/static/view.py", 404, "no such file"),
    ("/?n=many", 200, "aaaa1111"),
])
def test_mistakes_get_a_page_that_says_so(server, path, status, words):
    got, headers, body = request(server, path)
    assert got == status and words.replace("'", "&#39;") in body
    assert "Traceback" not in body and headers["content-type"].startswith("text/html")


def test_a_failing_store_is_a_500_page_not_a_traceback(store):
    class Broken(MemoryStore):
        def get(self, id_or_prefix):
            raise RuntimeError("disk on fire")

    with ViewServer(lambda: Broken([])) as server:
        status, _, body = request(server, "/run/aaaa")
    assert status == 500 and "RuntimeError: disk on fire" in body


def test_a_port_in_use_is_a_usage_error(server, store):
    with pytest.raises(UsageError, match=f"(?s)cannot serve on 127.0.0.1:{server.port}.*leave out --port"):
        ViewServer(lambda: store, port=server.port)


def test_the_static_files_are_served_with_their_types(server):
    status, headers, body = request(server, "/static/view.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and "addEventListener" in body
    assert request(server, "/static/view.css")[1]["content-type"].startswith("text/css")
