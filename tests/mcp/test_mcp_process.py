"""MCP server processes: one per batch, and none left behind when flowrun is killed (kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp_helpers import TIME_SERVER, alive, children_of, command_line, time_flow_text

from flowrunner import Engine, OpenAITransport, load_flow
from flowrunner._batch import BatchRunner
from flowrunner.mcp import started
from flowrunner.testing import ChatServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def wait_for(condition, bound: float = 60.0) -> bool:
    """Poll `condition` until true or `bound` seconds pass (a hang guard, not a timing check)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_kill_9_of_flowrun_leaves_no_mcp_server_behind(tmp_path):
    assert TIME_SERVER is not None
    flow = tmp_path / "time.yaml"
    flow.write_text(time_flow_text())
    # The chat server takes its time: flowrun is killed while waiting for the model, its MCP server up.
    with ChatServer(latency=20) as chat:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
        process = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "run", str(flow), "--base-url",
                                    chat.base_url], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            servers: list[int] = []

            def server_up() -> bool:
                servers[:] = [pid for pid in children_of(process.pid) if "mcp-server-time" in command_line(pid)]
                return bool(servers) and bool(chat.requests)

            assert wait_for(server_up), "flowrun never started the MCP server and asked the model"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(60)
            assert wait_for(lambda: not alive(servers[0]), 30), f"mcp-server-time (pid {servers[0]}) outlived flowrun"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(60)


def test_a_batch_starts_each_server_once_and_its_workers_share_it(tmp_path, chat_server):
    assert TIME_SERVER is not None
    path = tmp_path / "time.yaml"
    path.write_text(time_flow_text())
    flow = load_flow(path)
    zones = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney", "UTC"]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"question": f"What time is it in {zone}?"}) + "\n" for zone in zones))
    before = started()
    with OpenAITransport(base_url=chat_server.base_url, api_key="k") as transport:
        summary = BatchRunner(Engine(transport), flow, inputs, tmp_path / "out.jsonl", concurrency=3).run()
    assert (summary.progress.succeeded, summary.progress.failed) == (6, 0)
    assert started() - before == 1
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    answered = sorted(r["outputs"]["answer"].split("timezone ")[-1].rstrip(".") for r in results)
    assert answered == sorted(zones)
    # and the server was stopped when the batch ended
    assert wait_for(lambda: not [pid for pid in children_of(os.getpid())
                                 if "mcp-server-time" in command_line(pid) and alive(pid)], 30)
