"""`flowrun view` as a command: its arguments, its mistakes, and what it leaves unimported elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT
from flowrunner.view._app import can_open_browser


def flowrun(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("args", [["--help"], ["validate", "flows/weather.yaml"], ["view", "--help"]])
def test_other_commands_import_no_web_server_or_view_code(args):
    code = ("import sys\nfrom flowrunner._cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m in ('http.server', 'socketserver', 'sqlite3') "
            "or m.startswith(('flowrunner.view', 'flowrunner.history'))))")
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, cwd=ROOT, timeout=60)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


def test_help_says_what_the_pages_are():
    done = flowrun("view", "--help")
    assert done.returncode == 0
    assert "--port" in done.stdout and "--no-browser" in done.stdout and "timeline" in done.stdout


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_bad_port_is_a_usage_error(port):
    done = flowrun("view", "--port", port)
    assert done.returncode == 2 and "is not a port (0-65535" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_database_is_a_usage_error_with_a_hint(tmp_path):
    done = flowrun("view", "--db", str(tmp_path / "none.db"), "--no-browser")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: no run history at {tmp_path / 'none.db'}" in done.stderr and "hint: run a flow first" in done.stderr


@pytest.mark.parametrize("environ, platform, expected", [
    ({}, "linux", False), ({"DISPLAY": ":0"}, "linux", True), ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({}, "darwin", True), ({}, "win32", True), ({"CI": "true", "DISPLAY": ":0"}, "linux", False),
])
def test_the_browser_opens_only_where_one_can_show(environ, platform, expected):
    assert can_open_browser(environ, platform) is expected


@pytest.mark.server
def test_flowrun_view_serves_the_history_flowrun_wrote_until_ctrl_c(tmp_path):
    """Two `flowrun` runs logged into a fresh FLOWRUN_HOME, then `flowrun view` as a user starts it: the URL
    it prints opens the list (token to cookie), a run and the diff of the two; Ctrl-C ends it with status 0."""
    import http.cookiejar
    import signal
    import urllib.request

    from .conftest import clean_env_for
    from flowrunner.testing import ChatServer

    env = clean_env_for(tmp_path)
    with ChatServer() as chat:
        for question in ("What's the weather in Boston?", "What's the weather in Tokyo?"):
            done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "flows/weather.yaml", "--base-url",
                                   chat.base_url, "-i", f"question={question}"], cwd=ROOT, env=env, text=True,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
    assert (tmp_path / "history.db").is_file()
    view = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "view", "--no-browser"], cwd=ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert view.stdout is not None
        url = ""
        for _ in range(5):
            line = view.stdout.readline()
            if "?token=" in line:
                url = line.strip()
                break
        assert url.startswith("http://127.0.0.1:"), url
        base = url.split("/?")[0]
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(base + "/", timeout=30)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = opener.open(url, timeout=30)
        assert page.url == base + "/"
        listing = page.read().decode()
        ids = [part.split('"')[0] for part in listing.split('data-id="')[1:]]
        assert len(ids) == 2 and listing.count("<option>weather</option>") == 1
        run = opener.open(f"{base}/run/{ids[0]}", timeout=30).read().decode()
        assert 'class="timeline"' in run and "location Tokyo" in run
        diff = opener.open(f"{base}/diff?run={ids[1]}&run={ids[0]}", timeout=30).read().decode()
        assert "What changed" in diff and "Tokyo" in diff and "Boston" in diff
    finally:
        view.send_signal(signal.SIGINT)
        out, err = view.communicate(timeout=60)
    assert view.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
