"""`flowrun view` as a command: its arguments, its mistakes, and what it leaves unimported elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
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
