"""Helpers of the MCP tests (a module named uniquely: tests import `conftest` by name, and a second conftest.py
here would shadow the top one). Flows that use the real `mcp-server-time`, installed from PyPI by the test extra."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

TIME_SERVER = shutil.which("mcp-server-time")


def write_flow(folder: Path, body: str, name: str = "flow") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def time_flow_text(functions: str = "get_current_time", extra: str = "", server: str | None = None,
                   server_keys: str = "") -> str:
    """A flow whose step offers `functions` of mcp server `time` (a live mcp-server-time unless `server`
    names another command); `server_keys`: more YAML lines for the server, `extra`: for the flow."""
    keys = "".join(f"    {line}\n" for line in textwrap.dedent(server_keys).splitlines() if line.strip())
    return (
        "name: time\nmodel: test-model\n"
        "inputs:\n  question: {type: string, default: \"What time is it in Europe/Paris?\"}\n"
        "mcp:\n  time:\n"
        f"    command: [{server or TIME_SERVER}, --local-timezone, UTC]\n{keys}"
        f"{textwrap.dedent(extra)}"
        "steps:\n  - id: answer\n"
        f"    functions: [{functions}]\n    max_rounds: 3\n"
        "    messages:\n      - {role: user, content: \"{{ inputs.question }}\"}\n")


@pytest.fixture
def time_flow(tmp_path: Path) -> Callable[..., Path]:
    """Writes `time_flow_text(...)` into a flow file and gives its path."""
    if TIME_SERVER is None:
        pytest.fail("mcp-server-time is not installed: pip install -e '.[test]'")

    def make(name: str = "flow", **kwargs: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(time_flow_text(**kwargs))
        return path

    return make


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def record_dict(record: Any) -> dict[str, Any]:
    """A run record as data, without its timing (`without_timing`: a replay has timings of its own)."""
    from flowrunner._record import without_timing

    data: dict[str, Any] = record.to_dict() if not isinstance(record, dict) else record
    stripped: dict[str, Any] = without_timing(data)
    return stripped


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
