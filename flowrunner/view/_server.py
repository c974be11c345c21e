"""The HTTP side of `flowrun view`: a read-only server on 127.0.0.1 that only its token opens.

As Jupyter does, the URL printed carries a random token once (`/?token=...`); the server answers it
with a cookie and a redirect to the same page without it, and from then on the cookie is the key.
Anything without one gets 403, so another user of the machine cannot read the history. Only GET and
HEAD exist; a Host header other than this server's own (a DNS-rebinding page) is refused too.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence
from urllib.parse import parse_qs, urlencode, urlsplit

from .._exceptions import FlowrunnerError, UsageError
from . import _pages

STATIC = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src-elem 'self'; style-src-attr 'unsafe-inline'; "
       "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
"""No inline script runs, whatever a record holds; the bars' positions are style attributes."""
MAX_LIMIT = 1000


class RunStore(Protocol):
    """Where the runs come from: `flowrunner.history.History` opened read-only."""

    def runs(self, *, flow: str | None = None, status: str | None = None, since: Any = None, limit: int = 20,
             search: str | None = None) -> Sequence[_pages.RunLike]: ...

    def get(self, id_or_prefix: str) -> _pages.RunLike: ...


StoreFactory = Callable[[], RunStore]
"""Opens the store; called once per request, since a SQLite connection belongs to the thread that opened it."""

DiffFunction = Callable[[Any, Any], Any]


class _Page(Exception):
    """Answer with this status and an error page instead of the one asked for."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


class ViewServer:
    """Serves the run history's pages; `url` (with the token) is what to open."""

    def __init__(self, open_store: StoreFactory, *, port: int = 0, diff: DiffFunction | None = None,
                 token: str | None = None, source: str = ""):
        self.open_store = open_store
        self.source = source
        """What is served (the database's path), for the page header and the terminal."""
        self.diff = diff
        self.token = token or secrets.token_urlsafe(24)
        try:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        except OSError as exc:
            raise UsageError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}\n"
                             f"  hint: another program uses that port; leave out --port for a free one") from None
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.cookie_name = f"flowrun-view-{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        """Serve until `close()` (from another thread) or Ctrl-C."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ViewServer:
        """Serve on a background thread (for tests and library use)."""
        self._thread = threading.Thread(target=self.serve_forever, name="flowrun-view", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}


def _handler_for(server: ViewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        view = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "flowrun-view"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL and nothing per request."""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _read_only(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _pages.error_page(405, "flowrun view is read-only: only GET and HEAD"),
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

    def _send(self, status: int, body: str | bytes, *, content_type: str = "text/html; charset=utf-8",
              extra: dict[str, str] | None = None, head: bool = False) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(data)), "Cache-Control": "no-store",
                   "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", **(extra or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _authorised(self, query: dict[str, list[str]]) -> bool | str:
        """True with a valid cookie; the page's URL without the token when the token came in the query."""
        given = query.get("token", [""])[0]
        if given and hmac.compare_digest(given.encode(), self.view.token.encode()):
            rest = {key: values for key, values in query.items() if key != "token"}
            path = urlsplit(self.path).path
            return path + ("?" + urlencode(rest, doseq=True) if rest else "")
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = cookie.get(self.view.cookie_name)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.view.token.encode())

    def _answer(self, head: bool) -> None:
        if self.headers.get("Host", "") not in self.view.allowed_hosts():
            self._send(HTTPStatus.FORBIDDEN, _pages.error_page(403, "This server answers only at its own address."),
                       head=head)
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=50)
        authorised = self._authorised(query)
        if authorised is False:
            self._send(HTTPStatus.FORBIDDEN, _pages.error_page(
                403, "This page needs the token flowrun view printed.",
                "Open the whole URL `flowrun view` printed (with ?token=...), or start it again."), head=head)
            return
        if isinstance(authorised, str):
            cookie = f"{self.view.cookie_name}={self.view.token}; Path=/; HttpOnly; SameSite=Strict"
            self._send(HTTPStatus.SEE_OTHER, "", extra={"Location": authorised, "Set-Cookie": cookie}, head=head)
            return
        try:
            self._route(parts.path, query, head)
        except _Page as page:
            self._send(page.status, _pages.error_page(page.status, page.message, page.hint), head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser left; nothing to answer
        except Exception as exc:  # a record this version cannot read: a page that says so, never a traceback
            self._send(500, _pages.error_page(500, f"This page failed: {type(exc).__name__}: {exc}",
                                              "Please report it, with the run's record (`flowrun runs show ID --json`)."),
                       head=head)

    def _route(self, path: str, query: dict[str, list[str]], head: bool) -> None:
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            file = STATIC / name
            if "/" in name or file.suffix not in _STATIC_TYPES or not file.is_file():
                raise _Page(404, f"no such file: {path}")
            self._send(200, file.read_bytes(), content_type=_STATIC_TYPES[file.suffix], head=head)
        elif path == "/":
            self._send(200, self._runs_list(query), head=head)
        elif path.startswith("/run/"):
            self._send(200, _pages.run_page(self._get(path[len("/run/"):])), head=head)
        elif path == "/diff":
            ticked = [value for value in query.get("run", []) if value]
            picked = ticked + [value for value in query.get("a", []) + query.get("b", []) if value]
            if len(picked) != 2:
                raise _Page(400, f"Comparing needs exactly two runs; {len(picked)} were picked.",
                            "Tick two runs in the list, then press compare.")
            a, b = self._get(picked[0]), self._get(picked[1])
            if len(ticked) == 2 and (b.started or 0.0) < (a.started or 0.0):
                a, b = b, a  # two runs ticked in the list: A is the older, as in `flowrun runs diff OLD NEW`
            self._send(200, _pages.diff_page(a, b, self._diff(a, b)), head=head)
        else:
            raise _Page(404, f"There is no page {path}.")

    def _store(self) -> RunStore:
        try:
            return self.view.open_store()
        except FlowrunnerError as exc:
            raise _Page(500, f"The run history cannot be read: {exc}") from None

    def _get(self, id_or_prefix: str) -> _pages.RunLike:
        from urllib.parse import unquote

        wanted = unquote(id_or_prefix)
        try:
            return self._store().get(wanted)
        except (FlowrunnerError, LookupError) as exc:
            raise _Page(404, str(exc) or f"no run {wanted!r}", "Pick a run from the list of all runs.") from None

    def _diff(self, a: _pages.RunLike, b: _pages.RunLike) -> Any:
        return None if self.view.diff is None else self.view.diff(a, b)

    def _runs_list(self, query: dict[str, list[str]]) -> str:
        def one(name: str) -> str:
            return query.get(name, [""])[0].strip()

        flow, status, search, sort = one("flow"), one("status"), one("q"), one("sort") or "started"
        try:
            limit = max(1, min(MAX_LIMIT, int(one("n") or 100)))
        except ValueError:
            limit = 100
        if status not in ("", "succeeded", "failed"):
            raise _Page(400, f"No status {status!r}: a run either succeeded or failed.")
        store = self._store()
        runs = store.runs(flow=flow or None, status=status or None, limit=limit, search=search or None)
        flows = sorted({run.flow for run in store.runs(limit=MAX_LIMIT)} | ({flow} if flow else set()))
        return _pages.runs_page(runs, flow=flow, status=status, search=search, limit=limit, sort=sort,
                                descending=one("order") != "asc", flows=flows)
