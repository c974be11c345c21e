"""`flowrun mcp serve` (flowrunner/mcp/serve.py, flowrunner/_cli/mcp.py), driven by the SDK's own client
over stdio and streamable HTTP, the flows talking to the project's test chat server or replaying the
shipped cassette."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

from flowrunner.mcp.serve import tool_name  # noqa: E402
from flowrunner.testing import ChatServer  # noqa: E402

from conftest import FLOWS, ROOT, clean_env  # noqa: E402

pytestmark = pytest.mark.mcp_server

WEATHER_ANSWER = ("get_current_weather: location Boston, temperature 72, unit fahrenheit, "
                  "forecast sunny and windy.")

TOOLS_PY = '''
import sys
import threading

_both = threading.Barrier(2, timeout=30)


def meet(who):
    print("NOISE from a flow's function", who)  # stdout: must not reach the protocol
    return "met " + who


def together(who):
    _both.wait()  # passes only when two calls run at once
    return "together with " + who


def explode():
    raise RuntimeError("the fuse was lit")
'''

FLOW_FILES = {
    "meet.yaml": """\
        name: meet.people-v2.1
        model: gpt-4o-mini
        description: Meet someone; the model calls a Python function.
        inputs:
          who: {type: string, description: Whom to meet.}
          mood: {type: string, enum: [calm, merry], default: calm}
          times: {type: integer, default: 1}
          token: {env: SERVE_TEST_TOKEN}
        functions:
          meet:
            entry: serve_tools:meet
            description: Meet a person
            parameters: {type: object, properties: {who: {type: string}}, required: [who]}
        steps:
          - id: answer
            messages:
              - {role: user, content: "Arrange a meet for {{ inputs.who }}"}
            functions: [meet]
        """,
    "together.yaml": """\
        name: together
        model: gpt-4o-mini
        inputs:
          who: {type: string}
        functions:
          together:
            entry: serve_tools:together
            description: Be together with a person
            parameters: {type: object, properties: {who: {type: string}}, required: [who]}
        steps:
          - id: answer
            messages:
              - {role: user, content: "Spend time together for {{ inputs.who }}"}
            functions: [together]
        """,
    "explode.yaml": """\
        name: explode
        model: gpt-4o-mini
        description: Always fails.
        functions:
          explode:
            entry: serve_tools:explode
            description: Explode
            parameters: {type: object, properties: {}}
            on_error: fail
        steps:
          - id: boom
            messages:
              - {role: user, content: "explode now"}
            functions: [explode]
        outputs:
          first: "{{ steps.boom.content }}"
          second: "{{ steps.boom.content }}"
        """,
    "broken.yaml": """\
        name: broken
        steps:
          - id: nothing
            messages: not a list
        """,
}


@pytest.fixture(scope="module")
def flow_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    (folder / "serve_tools.py").write_text(TOOLS_PY)
    for name, text in FLOW_FILES.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowrunner._cli", "mcp", "serve", *args]


def stdio(*args: str, **env: str) -> StdioServerParameters:
    command = serve_command(*args)
    return StdioServerParameters(command=command[0], args=command[1:], env=clean_env(**env), cwd=str(ROOT))


class HttpServe:
    """`flowrun mcp serve --http 0 ...` as a child process; its stderr is kept, its URL read from it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(serve_command("--http", "0", *args), cwd=ROOT, env=clean_env(),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr.append(line)
                if " at http://127.0.0.1:" in line and not self.url:
                    self.url = line.rsplit(" at ", 1)[1].strip()
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        ready.wait(60)

    def stop(self) -> str:
        """Stop it; its stdout."""
        self.process.terminate()
        stdout, _ = self.process.communicate(timeout=60)
        self.reader.join(60)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return stdout


def raw_session(command: list[str], messages: list[dict[str, Any]], last_id: int,
                **env: str) -> subprocess.CompletedProcess[str]:
    """Write JSON-RPC `messages` to a stdio server (the rest once the first, initialize, is answered), read
    its stdout until the answer to `last_id`, then close its stdin (as a client does when done) and
    collect the rest. Killed after 120 s: no hang."""
    import tempfile

    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, cwd=ROOT, env=clean_env(**env), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(messages[0]) + "\n")  # initialize, answered before anything else
            process.stdin.flush()
            lines = [process.stdout.readline()]
            process.stdin.write("".join(json.dumps(m) + "\n" for m in messages[1:]))
            process.stdin.flush()
            for line in process.stdout:
                lines.append(line)
                if json.loads(line).get("id") == last_id:
                    break
            process.stdin.close()
            lines += process.stdout.readlines()
            process.stdout.close()
            process.wait()
        finally:
            watchdog.cancel()
        errors.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, "".join(lines), errors.read())


def session(server: Any, work: Any) -> Any:
    async def go() -> Any:
        async with Client(server) as client:
            return await work(client)

    return anyio.run(go)


def listed(server: Any) -> dict[str, Any]:
    async def work(client: Client) -> Any:
        return (await client.list_tools()).tools

    return {tool.name: tool for tool in session(server, work)}


def called(server: Any, tool: str, arguments: dict[str, Any]) -> Any:
    async def work(client: Client) -> Any:
        return await client.call_tool(tool, arguments)

    return session(server, work)


@pytest.mark.parametrize(("flow_name", "expected"), [
    ("weather", "weather"),
    ("Meet people v2.1", "Meet_people_v2_1"),
    ("  spaced -- out!  ", "spaced_--_out"),
    ("météo", "m_t_o"),
    ("***", "flow"),
    ("x" * 100, "x" * 64),
])
def test_tool_names_keep_to_what_clients_and_model_apis_accept(flow_name: str, expected: str) -> None:
    assert tool_name(flow_name) == expected


def test_lists_each_flow_as_a_tool_with_its_description_and_input_schema(flow_folder: Path, chat: ChatServer) -> None:
    tools = listed(stdio(str(FLOWS / "weather.yaml"), str(flow_folder), "--base-url", chat.base_url))
    assert sorted(tools) == ["explode", "meet_people-v2_1", "together", "weather"]  # broken.yaml skipped
    meet = tools["meet_people-v2_1"]
    assert meet.description == "Meet someone; the model calls a Python function."
    assert meet.input_schema == {  # the env: input `token` is not exposed
        "type": "object",
        "properties": {"who": {"type": "string", "description": "Whom to meet."},
                       "mood": {"type": "string", "enum": ["calm", "merry"], "default": "calm"},
                       "times": {"type": "integer", "default": 1}},
        "required": ["who"], "additionalProperties": False}
    assert meet.output_schema == {"type": "object", "properties": {"answer": {"type": "string"}},
                                  "required": ["answer"]}
    assert tools["weather"].description == "Ask about the weather; the model calls Python functions."
    assert tools["weather"].input_schema["properties"]["question"]["default"] == "What's the weather in Boston?"
    assert "required" not in tools["weather"].input_schema
    assert tools["together"].description == "Run the flowrunner flow 'together' (together.yaml)."


def test_calls_run_the_flow_against_the_chat_server_over_stdio(flow_folder: Path, chat: ChatServer) -> None:
    server = stdio(str(FLOWS / "weather.yaml"), str(flow_folder), "--base-url", chat.base_url,
                   SERVE_TEST_TOKEN="t0ken")

    async def work(client: Client) -> Any:
        return (await client.call_tool("weather", {}),
                await client.call_tool("weather", {"question": "What's the weather in Paris?"}),
                await client.call_tool("meet_people-v2_1", {"who": "Ada", "mood": "merry"}))

    boston, paris, meet = session(server, work)
    assert not boston.is_error
    assert [c.text for c in boston.content] == [WEATHER_ANSWER]
    assert boston.structured_content == {"answer": WEATHER_ANSWER}
    assert paris.structured_content == {"answer": WEATHER_ANSWER.replace("Boston", "Paris")}
    assert meet.structured_content == {"answer": 'meet: "met Ada".'}


def test_the_weather_flow_replays_its_shipped_cassette_with_no_key_and_no_server() -> None:
    result = called(stdio(str(FLOWS / "weather.yaml")), "weather", {})
    assert (result.is_error, result.content[0].text) == (False, WEATHER_ANSWER)


def test_a_served_flow_can_use_mcp_tools_of_its_own() -> None:
    # flows/mcp_time.yaml calls mcp-server-time's get_current_time; its cassette holds both the model's answers
    # and the tool's, so the served flow replays with no key and no time server started.
    result = called(stdio(str(FLOWS / "mcp_time.yaml")), "mcp_time", {})
    assert result.is_error is False
    assert result.structured_content["answer"].startswith("get_current_time: datetime 2026-")


def test_a_failing_run_is_an_error_result_and_the_server_goes_on(flow_folder: Path, chat: ChatServer) -> None:
    server = stdio(str(flow_folder), str(FLOWS / "weather.yaml"), "--base-url", chat.base_url)

    async def work(client: Client) -> Any:
        return await client.call_tool("explode", {}), await client.call_tool("weather", {})

    failed, after = session(server, work)
    assert failed.is_error
    assert failed.structured_content is None
    assert failed.content[0].text.startswith("error in step 'boom': ")
    assert "the fuse was lit" in failed.content[0].text
    assert after.structured_content == {"answer": WEATHER_ANSWER}  # the server went on


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "invalid arguments for meet_people-v2_1: 'who' is a required property "
         "(expected: who, mood (optional), times (optional))"),
    ({"who": 3}, "invalid arguments for meet_people-v2_1 at who: 3 is not of type 'string'"),
    ({"who": "Ada", "mood": "grumpy"}, "invalid arguments for meet_people-v2_1 at mood: 'grumpy' is not one of "
                                       "['calm', 'merry']"),
    ({"who": "Ada", "token": "mine"}, "invalid arguments for meet_people-v2_1: Additional properties are not "
                                      "allowed ('token' was unexpected)"),
])
def test_bad_arguments_are_an_error_result_saying_what_is_wrong(flow_folder: Path, chat: ChatServer,
                                                                 arguments: dict[str, Any], message: str) -> None:
    before = len(chat.requests)
    result = called(stdio(str(flow_folder / "meet.yaml"), "--base-url", chat.base_url), "meet_people-v2_1",
                    arguments)
    assert result.is_error
    assert result.content[0].text.startswith(message)
    assert len(chat.requests) == before  # the flow did not run


def test_a_flow_with_several_outputs_answers_a_json_object(tmp_path: Path, chat: ChatServer) -> None:
    (tmp_path / "two.yaml").write_text(textwrap.dedent("""\
        name: two
        model: gpt-4o-mini
        steps:
          - id: greet
            messages:
              - {role: user, content: Hello there}
        outputs:
          first: "{{ steps.greet.content }}"
          second: "again: {{ steps.greet.content }}"
        """))
    result = called(stdio(str(tmp_path / "two.yaml"), "--base-url", chat.base_url), "two", {})
    outputs = {"first": "Hello! How can I help you today?", "second": "again: Hello! How can I help you today?"}
    assert result.structured_content == outputs
    assert json.loads(result.content[0].text) == outputs


def test_stdout_carries_only_the_protocol(flow_folder: Path, chat: ChatServer) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "meet_people-v2_1", "arguments": {"who": "Ada"}}},
    ]
    done = raw_session(serve_command(str(flow_folder), "--base-url", chat.base_url), messages, last_id=3,
                       SERVE_TEST_TOKEN="t0ken")
    answers = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda a: a["id"])
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert answers[2]["result"].get("structuredContent") == {"answer": 'meet: "met Ada".'}
    # The function's print, the call line and the log went to stderr.
    assert "NOISE from a flow's function Ada" in done.stderr
    assert "  [answer] meet(" in done.stderr
    assert "mcp: meet_people-v2_1: succeeded in " in done.stderr
    assert "warning: skipping " in done.stderr and "broken.yaml" in done.stderr


def test_an_env_input_whose_variable_is_unset_is_warned_about_and_fails_the_call(flow_folder: Path,
                                                                                 chat: ChatServer) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "meet_people-v2_1", "arguments": {"who": "Ada"}}},
    ]
    done = raw_session(serve_command(str(flow_folder / "meet.yaml"), "--base-url", chat.base_url), messages,
                       last_id=2)
    assert (f"warning: {flow_folder / 'meet.yaml'}: input 'token' comes from the environment variable "
            "SERVE_TEST_TOKEN, which is not set: calls will fail") in done.stderr
    result = json.loads(done.stdout.splitlines()[1])["result"]
    assert result["isError"] is True
    assert "needs input 'token': set the environment variable SERVE_TEST_TOKEN" in result["content"][0]["text"]


def test_http_serves_the_same_tools_and_runs_calls_concurrently(flow_folder: Path, chat: ChatServer) -> None:
    served = HttpServe(str(FLOWS / "weather.yaml"), str(flow_folder), "--base-url", chat.base_url)
    try:
        assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/mcp"), served.stderr
        assert sorted(listed(served.url)) == ["explode", "meet_people-v2_1", "together", "weather"]
        assert called(served.url, "weather", {}).structured_content == {"answer": WEATHER_ANSWER}

        results: list[Any] = []

        async def both() -> None:
            async with Client(served.url) as client:
                async def one(who: str) -> None:
                    results.append(await client.call_tool("together", {"who": who}))

                async with anyio.create_task_group() as group:
                    group.start_soon(one, "Ada")
                    group.start_soon(one, "Bob")

        anyio.run(both)  # each call's function waits for the other: run one after the other, both would fail
        assert sorted(r.content[0].text for r in results) == ['together: "together with Ada".',
                                                              'together: "together with Bob".']
        bad = called(served.url, "weather", {"question": ["no"]})
        assert bad.is_error and "is not of type 'string'" in bad.content[0].text
    finally:
        stdout = served.stop()
    assert stdout == ""
    assert "Traceback" not in "".join(served.stderr)


def test_invalid_flows_are_skipped_with_their_location_and_none_valid_is_a_usage_error(flow_folder: Path) -> None:
    done = subprocess.run(serve_command(str(flow_folder / "broken.yaml")), cwd=ROOT, env=clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"warning: skipping {flow_folder / 'broken.yaml'}: not a valid flow" in done.stderr
    assert f"{flow_folder / 'broken.yaml'}:4:" in done.stderr  # file:line:column of the problem
    assert "error: no valid flow to serve in" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_flow_with_no_cassette_to_replay_and_nothing_to_talk_to_is_skipped(flow_folder: Path) -> None:
    done = subprocess.run(serve_command(str(flow_folder / "together.yaml")), cwd=ROOT, env=clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "OPENAI_API_KEY is not set, no --base-url, and there is no cassette" in done.stderr


def test_two_flows_with_one_tool_name_are_a_clear_error(tmp_path: Path) -> None:
    for folder, name in (("a", "same.name"), ("b", "same_name")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "f.yaml").write_text(f"name: {name}\nsteps:\n  - id: s\n    messages:\n"
                                                  "      - {role: user, content: hi}\n")
    done = subprocess.run(serve_command(str(tmp_path), "--base-url", "http://127.0.0.1:9/v1"), cwd=ROOT,
                          env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert (f"error: two flows would be the MCP tool 'same_name': {tmp_path / 'a' / 'f.yaml'} (name 'same.name') "
            f"and {tmp_path / 'b' / 'f.yaml'} (name 'same_name')") in done.stderr
    assert "hint: give one of them another `name:`" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["flows/weather.yaml", "--http", "70000"], "expected a port from 0 to 65535, got '70000'"),
    (["flows/weather.yaml", "-i", "question=x"], "a served flow's inputs are the arguments of each tool call"),
    (["no/such/folder"], "no such file or folder: no/such/folder"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    done = subprocess.run(serve_command(*args), cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_a_usage_error(flow_folder: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(serve_command("flows/weather.yaml", "--http", str(port)), cwd=ROOT, env=clean_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: " in done.stderr
    assert "choose another --http port" in done.stderr


def test_help_does_not_import_the_mcp_sdk() -> None:
    code = ("import sys\nfrom flowrunner._cli import main\n"
            "try:\n    main(['mcp', 'serve', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'uvicorn'))))")
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, cwd=ROOT, timeout=60)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr
    assert "mcpServers" in done.stdout


def test_served_runs_record_a_cassette_that_a_later_server_replays(tmp_path: Path, chat: ChatServer) -> None:
    cassette = tmp_path / "served.yaml"
    recorded = called(stdio(str(FLOWS / "weather.yaml"), "--base-url", chat.base_url, "--cassette", str(cassette),
                            "--record-mode", "all"), "weather", {"question": "What's the weather in Oslo?"})
    assert recorded.structured_content == {"answer": WEATHER_ANSWER.replace("Boston", "Oslo")}
    assert cassette.is_file()
    requests = len(chat.requests)
    replayed = called(stdio(str(FLOWS / "weather.yaml"), "--cassette", str(cassette), "--record-mode", "none"),
                      "weather", {"question": "What's the weather in Oslo?"})
    assert replayed.structured_content == recorded.structured_content
    assert len(chat.requests) == requests  # the chat server was not asked again
    missed = called(stdio(str(FLOWS / "weather.yaml"), "--cassette", str(cassette), "--record-mode", "none"),
                    "weather", {"question": "What's the weather in Rome?"})
    assert missed.is_error and "cassette" in missed.content[0].text.lower()
