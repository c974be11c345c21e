"""The project's MCP test server (flowrunner/testing/mcp_server.py), driven by the SDK's own client over
stdio and streamable HTTP: its tools, its argument checks, and each fault."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
import jsonschema  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

from flowrunner.testing.mcp_server import (  # noqa: E402
    FaultError,
    Faults,
    McpTestServer,
    McpTestServerProcess,
    main,
    stdio_command,
)

pytestmark = pytest.mark.mcp_server


def stdio(*faults: str) -> StdioServerParameters:
    command = stdio_command(*faults)
    return StdioServerParameters(command=command[0], args=command[1:])


def call(server: Any, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> Any:
    async def go() -> Any:
        async with Client(server) as client:
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)

    return anyio.run(go)


def tools_of(server: Any) -> dict[str, Any]:
    async def go() -> Any:
        async with Client(server) as client:
            return (await client.list_tools()).tools

    return {tool.name: tool for tool in anyio.run(go)}


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> Any:
    """A factory: faults -> something `Client` connects to, over stdio or in-process HTTP."""
    servers: list[McpTestServer] = []

    def make(*faults: str) -> Any:
        if request.param == "stdio":
            return stdio(*faults)
        server = McpTestServer(faults).start()
        servers.append(server)
        return server.url

    yield make
    for server in servers:
        server.stop()


def test_lists_the_four_tools_with_their_schemas(transport: Any) -> None:
    tools = tools_of(transport())
    assert list(tools) == ["echo", "add", "weather", "fail"]
    assert tools["echo"].input_schema["required"] == ["text"]
    assert tools["add"].output_schema["properties"] == {"sum": {"type": "number"}}
    for tool in tools.values():
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert tool.description


@pytest.mark.parametrize(("tool", "arguments", "text", "structured"), [
    ("echo", {"text": "hello"}, "hello", None),
    ("add", {"a": 2, "b": 0.5}, '{"sum": 2.5}', {"sum": 2.5}),
    ("weather", {"city": "Paris"},
     '{"city": "Paris", "temperature": "72", "unit": "fahrenheit", "forecast": ["sunny", "windy"]}', None),
])
def test_each_tool_answers(transport: Any, tool: str, arguments: dict[str, Any], text: str,
                           structured: Any) -> None:
    result = call(transport(), tool, arguments)
    assert not result.is_error
    assert [c.text for c in result.content] == [text]
    assert result.structured_content == structured


def test_fail_is_an_error_result(transport: Any) -> None:
    result = call(transport(), "fail", {})
    assert result.is_error
    assert result.content[0].text == "fail: this tool always fails"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"text": 3}, "invalid arguments for echo at text: 3 is not of type 'string'"),
    ({}, "invalid arguments for echo: 'text' is a required property"),
    ({"text": "a", "more": 1}, "invalid arguments for echo: Additional properties are not allowed"),
])
def test_bad_arguments_are_an_error_result_saying_what_is_wrong(arguments: dict[str, Any], message: str) -> None:
    result = call(stdio(), "echo", arguments)
    assert result.is_error
    assert result.content[0].text.startswith(message)


def test_an_unknown_tool_is_an_error_result() -> None:
    result = call(stdio(), "nope", {})
    assert result.is_error and "unknown tool 'nope'" in result.content[0].text


def test_slow_answers_late_and_a_short_client_timeout_gives_up(transport: Any) -> None:
    server = transport("weather:slow=30")
    with pytest.raises(Exception) as caught:  # the SDK's timeout error, inside its task group
        call(server, "weather", {"city": "Oslo"}, timeout=1)
    assert "Timed out" in repr(caught.value) or "timed out" in repr(caught.value).lower()
    # Only the named tool is slow.
    assert call(server, "echo", {"text": "quick"}, timeout=30).content[0].text == "quick"
    assert call(transport("slow=0.2"), "echo", {"text": "late"}).content[0].text == "late"


def test_hang_never_answers_the_call_but_the_server_keeps_answering(transport: Any) -> None:
    server = transport("echo:hang")

    async def go() -> tuple[bool, str]:
        async with Client(server) as client:
            with anyio.move_on_after(2) as scope:
                await client.call_tool("echo", {"text": "x"})
            added = await client.call_tool("add", {"a": 1, "b": 1})
            return scope.cancelled_caught, added.content[0].text

    assert anyio.run(go) == (True, '{"sum": 2}')


def test_huge_results_carry_many_megabytes(transport: Any) -> None:
    result = call(transport("echo:huge=3"), "echo", {"text": "x"})
    assert len(result.content[0].text) == 3 * 1024 * 1024


def test_huge_defaults_to_16_megabytes() -> None:
    assert len(call(stdio("huge"), "weather", {"city": "x"}).content[0].text) == 16 * 1024 * 1024


def test_bad_schema_lists_a_tool_whose_input_schema_is_not_a_json_schema(transport: Any) -> None:
    tools = tools_of(transport("bad-schema"))
    assert list(tools) == ["echo", "add", "weather", "fail", "broken"]
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(tools["broken"].input_schema)
    named = tools_of(transport("add:bad-schema"))
    assert list(named) == ["echo", "add", "weather", "fail"]
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(named["add"].input_schema)


def run_stdio_session(*faults: str, call_tool: str = "echo") -> subprocess.CompletedProcess[str]:
    """Speak raw JSON-RPC to the stdio server: initialize, then one tools/call."""
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": call_tool,
                                                                          "arguments": {"text": "x"}}},
    ]
    return subprocess.run(stdio_command(*faults), input="".join(json.dumps(m) + "\n" for m in lines),
                          capture_output=True, text=True, timeout=60)


def test_stdio_writes_only_protocol_to_stdout() -> None:
    done = run_stdio_session()
    assert done.returncode == 0
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["content"] == [{"type": "text", "text": "x"}]


def test_crash_exits_in_the_middle_of_the_call() -> None:
    done = run_stdio_session("echo:crash")
    assert done.returncode == 3
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [1]  # initialize only
    assert "crash fault: exiting in the middle of a call to echo" in done.stderr
    with pytest.raises(Exception):  # the SDK client sees the connection go
        call(stdio("crash"), "echo", {"text": "x"}, timeout=30)


def test_crash_at_start_exits_before_answering_anything() -> None:
    done = run_stdio_session("crash-at-start")
    assert (done.returncode, done.stdout) == (3, "")
    assert "crash-at-start fault" in done.stderr


def test_stderr_writes_lines_then_crashes() -> None:
    done = run_stdio_session("stderr=4")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        *(f"mcp test server: stderr line {n} of 4 (call to echo)" for n in range(1, 5)),
        "mcp test server: stderr fault: exiting after 4 lines",
    ]


def test_the_process_variant_serves_http_and_keeps_stderr() -> None:
    with McpTestServerProcess(["weather:stderr=3"]) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/mcp")
        assert call(server.url, "echo", {"text": "hi"}).content[0].text == "hi"
        with pytest.raises(Exception):
            call(server.url, "weather", {"city": "x"}, timeout=30)
        server.stop()
        assert server.returncode == 3
        assert server.stderr_lines[-1] == "mcp test server: stderr fault: exiting after 3 lines"


def test_the_in_process_server_refuses_faults_that_end_the_process() -> None:
    with pytest.raises(FaultError, match="McpTestServerProcess"):
        McpTestServer(["crash"]).start()


@pytest.mark.parametrize(("text", "message"), [
    ("explode", "unknown fault 'explode': expected [TOOL:]FAULT[=VALUE] with FAULT one of slow, hang"),
    ("nope:hang", "fault 'nope:hang' names no tool of this server: expected one of echo, add, weather, fail"),
    ("slow", "fault 'slow': slow needs its seconds, e.g. slow=2"),
    ("slow=-1", "fault 'slow=-1': the value must be a number from 0, e.g. slow=2"),
    ("slow=soon", "fault 'slow=soon': the value must be a number from 0"),
    ("hang=3", "fault 'hang=3': hang takes no value"),
    ("echo:crash-at-start", "crash-at-start is server-wide"),
])
def test_a_bad_fault_says_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(FaultError) as caught:
        Faults.parse([text])
    assert message in str(caught.value)


def test_the_command_line_reports_a_bad_fault_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--fault", "explode"])
    assert caught.value.code == 2
    assert "unknown fault 'explode'" in capsys.readouterr().err


def test_help_documents_every_fault() -> None:
    done = subprocess.run([sys.executable, "-m", "flowrunner.testing.mcp_server", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for fault in ("slow=SECONDS", "hang", "crash", "crash-at-start", "bad-schema", "huge[=MB]", "stderr[=N]"):
        assert f"`{fault}`" in done.stdout
