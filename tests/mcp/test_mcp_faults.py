"""Faults of MCP servers, against the project's test MCP server (`flowrunner.testing.mcp_server`) over stdio
and streamable HTTP: slow, hanging, crashing, noisy, wrong schema, huge results, unreachable. Every one ends
as the flow says (the model told, or a run error naming the server), never as a hang or a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp_helpers import alive, children_of, command_line

from flowrunner import Engine, OpenAITransport, load_flow
from flowrunner.mcp._result import MAX_RESULT_CHARS
from flowrunner.testing import ChatServer
from flowrunner.testing.mcp_server import McpTestServer, stdio_command

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def flow_file(tmp_path: Path, server: str, functions: str = "weather", on_error: str = "reply") -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "name: faults\nmodel: test-model\n"
        f"mcp:\n  test:\n{server}    on_error: {on_error}\n"
        f"steps:\n  - id: a\n    functions: [{functions}]\n    max_rounds: 3\n"
        "    messages: [{role: user, content: \"What is the weather in Boston?\"}]\n")
    return path


def stdio(*faults: str, timeout: str = "30s") -> str:
    return f"    command: {json.dumps(stdio_command(*faults))}\n    timeout: {timeout}\n"


def run(path: Path, base_url: str):
    started = time.monotonic()
    with OpenAITransport(base_url=base_url, api_key="k") as transport:
        record = Engine(transport).run(load_flow(path))
    assert time.monotonic() - started < 120  # a hang guard, not a timing assertion
    return record


def only_call(record):
    (call,) = [call for step in record.steps for r in step.rounds for call in r.calls]
    return call


def test_a_slow_call_within_its_timeout_answers(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("weather:slow=1")), chat_server.base_url)
    assert record.status == "succeeded", record.error
    assert json.loads(only_call(record).result)["city"] == "Boston" and only_call(record).server == "test"


@pytest.mark.parametrize("fault", ["weather:slow=60", "weather:hang"])
def test_a_call_past_its_timeout_is_the_tools_error(tmp_path, chat_server, fault):
    record = run(flow_file(tmp_path, stdio(fault, timeout="1s")), chat_server.base_url)
    assert record.status == "succeeded"
    assert only_call(record).error == "tool 'weather' of mcp server 'test' did not answer within its timeout of 1s"
    assert chat_server.requests[-1].body["messages"][-1]["content"] == \
        "Error: the tool did not answer within 1s."


def test_a_hanging_call_with_on_error_fail_ends_the_run(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("weather:hang", timeout="1s"), on_error="fail"), chat_server.base_url)
    assert record.status == "failed" and record.error["type"] == "FunctionError"
    assert "did not answer within its timeout of 1s" in record.error["message"]


def test_a_crash_mid_call_is_a_run_error_with_the_servers_stderr(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("weather:crash")), chat_server.base_url)
    assert record.status == "failed" and record.error["type"] == "MCPServerError"
    message = record.error["message"]
    assert message.startswith(f"mcp server 'test' (`{' '.join(stdio_command('weather:crash'))}`) stopped "
                              "answering during the call of 'weather'")
    assert "its last lines on stderr:" in message
    assert "crash fault: exiting in the middle of a call to weather" in message
    assert "Traceback" not in message


def test_only_the_last_lines_of_a_noisy_stderr_are_shown(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("weather:stderr=200")), chat_server.base_url)
    message = record.error["message"]
    assert "stderr line 200 of 200" in message and "stderr line 150 of 200" not in message
    assert len(message.splitlines()) < 30


def test_a_server_that_crashes_at_start_fails_the_run_before_any_request(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("crash-at-start")), chat_server.base_url)
    assert record.status == "failed" and record.error["type"] == "MCPServerError"
    assert "did not start" in record.error["message"]
    assert "crash-at-start fault: exiting before answering anything" in record.error["message"]
    assert chat_server.requests == []


def test_a_huge_result_is_cut_before_it_reaches_the_model_or_the_record(tmp_path, chat_server):
    record = run(flow_file(tmp_path, stdio("weather:huge=2")), chat_server.base_url)
    assert record.status == "succeeded", record.error
    result = only_call(record).result
    assert isinstance(result, str) and len(result) < MAX_RESULT_CHARS + 200
    assert result.endswith(f"[cut by flowrunner: the result was {2 * 1024 * 1024} characters, at most "
                           f"{MAX_RESULT_CHARS} are passed on]")
    assert len(chat_server.requests[-1].body["messages"][-1]["content"]) == len(result)


def test_a_tool_with_a_broken_input_schema_fails_the_run_only_when_a_step_offers_it(tmp_path, chat_server):
    broken = run(flow_file(tmp_path, stdio("bad-schema"), functions="broken"), chat_server.base_url)
    assert broken.status == "failed" and broken.error["type"] == "MCPServerError"
    assert "lists tool 'broken', but its input schema is not a valid JSON Schema" in broken.error["message"]
    fine = run(flow_file(tmp_path, stdio("bad-schema"), functions="weather"), chat_server.base_url)
    assert fine.status == "succeeded", fine.error


def test_streamable_http_with_a_secret_header(tmp_path, chat_server, monkeypatch):
    monkeypatch.setenv("MCPC_TEST_TOKEN", "tok-0123456789abcdef")
    with McpTestServer() as server:
        path = flow_file(tmp_path, f"    url: {server.url}\n"
                                   "    headers: {Authorization: {env: MCPC_TEST_TOKEN, prefix: 'Bearer '}}\n")
        record = run(path, chat_server.base_url)
    assert record.status == "succeeded", record.error
    assert json.loads(only_call(record).result)["city"] == "Boston"


def test_streamable_http_hang_and_an_unreachable_server(tmp_path, chat_server):
    with McpTestServer(faults=["weather:hang"]) as server:
        record = run(flow_file(tmp_path, f"    url: {server.url}\n    timeout: 1s\n"), chat_server.base_url)
    assert only_call(record).error == "tool 'weather' of mcp server 'test' did not answer within its timeout of 1s"
    gone = run(flow_file(tmp_path, "    url: http://127.0.0.1:9/mcp\n    start_timeout: 10s\n"),
               chat_server.base_url)
    assert gone.status == "failed" and gone.error["type"] == "MCPServerError"
    assert gone.error["message"].startswith("mcp server 'test' (http://127.0.0.1:9/mcp) did not start")
    assert "hint: check that the server is up at that URL" in gone.error["message"]


def test_kill_9_of_flowrun_during_a_hanging_call_leaves_no_server(tmp_path):
    with ChatServer() as chat:
        path = flow_file(tmp_path, stdio("weather:hang", timeout="10m"))
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
        process = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "run", str(path), "--base-url",
                                    chat.base_url], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            servers: list[int] = []
            while time.monotonic() < deadline and not (servers and chat.requests):
                servers = [pid for pid in children_of(process.pid)
                           if "flowrunner.testing.mcp_server" in command_line(pid)]
                time.sleep(0.05)
            assert servers and chat.requests, "flowrun never started the server and asked the model"
            time.sleep(1)  # the model's call is now with the server, which never answers it
            os.kill(process.pid, signal.SIGKILL)
            process.wait(60)
            deadline = time.monotonic() + 30
            while alive(servers[0]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(servers[0]), "the MCP server outlived flowrun"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(60)


def test_ctrl_c_during_a_hanging_call_ends_flowrun_and_its_server(tmp_path):
    with ChatServer() as chat:
        path = flow_file(tmp_path, stdio("weather:hang", timeout="10m"))
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
        process = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "run", str(path), "--base-url",
                                    chat.base_url], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 60
            servers: list[int] = []
            while time.monotonic() < deadline and not (servers and chat.requests):
                servers = [pid for pid in children_of(process.pid)
                           if "flowrunner.testing.mcp_server" in command_line(pid)]
                time.sleep(0.05)
            assert servers and chat.requests, "flowrun never started the server and asked the model"
            time.sleep(1)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
            assert process.returncode == 130 and err.endswith("interrupted\n") and "Traceback" not in err
            deadline = time.monotonic() + 30
            while alive(servers[0]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(servers[0]), "the MCP server outlived an interrupted flowrun"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(60)
