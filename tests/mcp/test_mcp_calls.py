"""MCP tools in runs, against the real `mcp-server-time` (from PyPI) and the project's test chat server."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack

import pytest

from flowrunner import Engine, OpenAITransport, load_flow
from flowrunner._exceptions import FlowValidationError, FunctionError, MCPServerError
from flowrunner.mcp import attach

from mcp_helpers import alive, children_of, command_line, time_flow  # noqa: F401 - a fixture

pytestmark = pytest.mark.server


def run(flow_path, chat_server, inputs=None, **engine):
    with OpenAITransport(base_url=chat_server.base_url, api_key="k") as transport:
        return Engine(transport, **engine).run(load_flow(flow_path), inputs or {})


def test_the_tools_come_from_tools_list(time_flow):
    flow = load_flow(time_flow(functions="get_current_time, convert_time"))
    with ExitStack() as stack:
        bound = attach(flow, stack)
        spec = bound.functions["get_current_time"]
        assert spec.server == "time" and spec.entry == "mcp:time/get_current_time"
        assert spec.description == "Get current time in a specific timezone"
        assert spec.parameters["required"] == ["timezone"] and spec.parameters["type"] == "object"
        assert set(bound.functions["convert_time"].parameters["properties"]) == \
            {"source_timezone", "time", "target_timezone"}


def test_a_call_goes_to_the_server_and_its_structured_result_to_the_model(time_flow, chat_server):
    record = run(time_flow(), chat_server)
    assert record.status == "succeeded", record.error
    (call,) = record.steps[0].rounds[0].calls
    assert (call.name, call.server, call.arguments, call.error) == \
        ("get_current_time", "time", {"timezone": "Europe/Paris"}, None)
    assert call.result["timezone"] == "Europe/Paris" and call.result["day_of_week"] in \
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    sent = chat_server.requests[-1].body["messages"][-1]
    assert sent["role"] == "tool" and '"timezone": "Europe/Paris"' in sent["content"]
    assert record.outputs["answer"].startswith("get_current_time: datetime ")


def test_an_error_result_goes_back_to_the_model_or_fails_the_run(time_flow, chat_server):
    record = run(time_flow(), chat_server, {"question": "What time is it in Mars/Olympus?"})
    assert record.status == "succeeded"
    (call,) = record.steps[0].rounds[0].calls
    assert call.error.startswith("tool 'get_current_time' of mcp server 'time' returned an error: ")
    assert "Invalid timezone" in call.error
    assert "Invalid timezone" in chat_server.requests[-1].body["messages"][-1]["content"]

    failing = run(time_flow(server_keys="on_error: fail", name="failing"), chat_server,
                  {"question": "What time is it in Mars/Olympus?"})
    assert failing.status == "failed" and failing.error["type"] == "FunctionError"
    assert "Invalid timezone" in failing.error["message"]


def test_the_allow_list_is_what_the_model_is_offered(time_flow, chat_server):
    record = run(time_flow(functions="get_current_time", server_keys="tools: [get_current_time]"), chat_server)
    assert record.status == "succeeded"
    offered = [tool["function"]["name"] for tool in chat_server.requests[0].body["tools"]]
    assert offered == ["get_current_time"]
    with pytest.raises(FlowValidationError, match="neither a declared function nor on the tools allow-list"):
        load_flow(time_flow(functions="convert_time", server_keys="tools: [get_current_time]", name="other"))


def test_a_name_the_server_does_not_list_is_a_located_error_at_the_start_of_the_run(time_flow, chat_server):
    path = time_flow(functions="get_time")
    with pytest.raises(FlowValidationError) as caught:
        run(path, chat_server)
    (problem,) = caught.value.problems
    assert (problem.location.line, problem.location.column) == (10, 17)
    assert problem.message == "no function or mcp tool is called 'get_time'"
    assert problem.hint == "time offers convert_time, get_current_time; or declare it under functions:"
    assert chat_server.requests == []  # nothing was asked


def test_an_allow_list_naming_a_tool_the_server_lacks_is_located(time_flow, chat_server):
    path = time_flow(functions="get_current_time", server_keys="tools: [get_current_time, get_weather]")
    with pytest.raises(FlowValidationError) as caught:
        run(path, chat_server)
    (problem,) = caught.value.problems
    assert problem.message == "mcp server 'time' lists no tool 'get_weather'"
    assert (problem.location.line, problem.location.column) == (8, 31)


def test_a_prefix_renames_the_tools(time_flow, chat_server):
    record = run(time_flow(functions="t_get_current_time", server_keys="prefix: t_"), chat_server,
                 {"question": "What is the current time in Asia/Tokyo?"})
    assert record.status == "succeeded", record.error
    (call,) = record.steps[0].rounds[0].calls
    assert (call.name, call.server, call.arguments) == ("t_get_current_time", "time", {"timezone": "Asia/Tokyo"})


def test_a_server_that_is_not_installed_fails_the_run_saying_so(time_flow, chat_server):
    record = run(time_flow(server="mcp-server-nowhere"), chat_server)
    assert record.status == "failed" and record.error["type"] == "MCPServerError"
    assert record.error["message"].startswith("mcp server 'time': cannot start `mcp-server-nowhere --local-timezone "
                                              "UTC`: 'mcp-server-nowhere' is not an executable on PATH")
    assert chat_server.requests == []


def test_a_server_that_dies_at_start_shows_its_stderr(tmp_path, time_flow, chat_server):
    script = tmp_path / "dies.py"
    script.write_text("import sys\nsys.stderr.write('loading config\\nfatal: no config file\\n')\nsys.exit(3)\n")
    (tmp_path / "dies").write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    os.chmod(tmp_path / "dies", 0o755)
    started = time.monotonic()
    record = run(time_flow(server=str(tmp_path / "dies")), chat_server)
    assert time.monotonic() - started < 60  # a hang guard, not a timing assertion
    assert record.status == "failed" and record.error["type"] == "MCPServerError"
    message = record.error["message"]
    assert message.startswith(f"mcp server 'time' (`{tmp_path / 'dies'} --local-timezone UTC`) did not start")
    assert "its last lines on stderr:\n    loading config\n    fatal: no config file" in message
    assert "Traceback" not in message


def test_a_killed_server_is_a_run_error_naming_it(time_flow):
    flow = load_flow(time_flow())
    with ExitStack() as stack:
        bound = attach(flow, stack)
        call = bound.functions["get_current_time"].func
        assert call(timezone="UTC")["timezone"] == "UTC"
        (server_pid,) = [pid for pid in children_of(os.getpid()) if "mcp-server-time" in command_line(pid)]
        os.kill(server_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(MCPServerError) as caught:
            call(timezone="UTC")
    message = str(caught.value)
    assert message.startswith("mcp server 'time' (`") and "mcp-server-time --local-timezone UTC`)" in message
    assert "during the call of 'get_current_time'" in message or "is not running" in message


def test_approval_ask_runs_only_what_the_user_approves(time_flow, chat_server):
    path = time_flow(server_keys="approve: ask")
    refused = run(path, chat_server)  # no one to ask: refused, and the model told
    (call,) = refused.steps[0].rounds[0].calls
    assert call.error == "not run: the call needs approval (approve: ask) and there is no one to ask"
    assert "needs approval" in chat_server.requests[-1].body["messages"][-1]["content"]
    assert call.result is None

    asked = []
    approved = run(path, chat_server, approve=lambda spec, arguments: asked.append((spec.name, arguments)) or True)
    assert asked == [("get_current_time", {"timezone": "Europe/Paris"})]
    assert approved.steps[0].rounds[0].calls[0].result["timezone"] == "Europe/Paris"

    denied = run(path, chat_server, approve=lambda spec, arguments: False)
    assert denied.steps[0].rounds[0].calls[0].error == "not run: the user refused the call"


def test_runs_share_nothing_after_they_end(time_flow, chat_server):
    """The server is stopped when the run ends: no process left behind."""
    before = set(children_of(os.getpid()))
    record = run(time_flow(), chat_server)
    assert record.status == "succeeded"
    deadline = time.monotonic() + 30
    while (set(children_of(os.getpid())) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in set(children_of(os.getpid())) - before if alive(pid)]
    assert left == []


def test_a_function_error_keeps_its_type(time_flow):
    flow = load_flow(time_flow())
    with ExitStack() as stack:
        call = attach(flow, stack).functions["get_current_time"].func
        with pytest.raises(FunctionError):
            call(timezone="Nowhere/Atlantis")
