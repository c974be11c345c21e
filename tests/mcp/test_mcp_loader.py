"""The `mcp:` section as `flowrun validate` sees it: checked and located without starting any server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowrunner import load_flow
from flowrunner._exceptions import FlowValidationError

from conftest import clean_env

ROOT = Path(__file__).resolve().parents[2]


def problems(tmp_path: Path, text: str, tools: str | None = None) -> list[str]:
    if tools is not None:
        (tmp_path / "mcpc_loader_tools.py").write_text(textwrap.dedent(tools))
    path = tmp_path / "f.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(FlowValidationError) as caught:
        load_flow(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems]


STEP = """\
steps:
  - id: a
    functions: [{names}]
    messages: [{{role: user, content: hi}}]
"""


def test_a_flow_with_servers_loads_with_its_servers_and_the_names_only_a_server_can_give(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("model: m\nmcp:\n  time:\n    command: [mcp-server-time]\n    timeout: 5s\n"
                    "    prefix: t_\n    approve: ask\n" + STEP.format(names="t_get_current_time"))
    flow = load_flow(path)
    (server,) = flow.mcp
    assert (server.name, server.command, server.timeout, server.prefix, server.approve) == \
        ("time", ("mcp-server-time",), 5.0, "t_", True)
    assert flow.functions == {}  # known when the run starts, from tools/list
    assert [(step, name, (loc.line, loc.column)) for step, name, loc in flow.mcp_refs] == \
        [("a", "t_get_current_time", (10, 17))]


def test_a_name_no_allow_list_has_is_a_located_error_when_every_server_has_one(tmp_path):
    found = problems(tmp_path, "model: m\nmcp:\n  time:\n    command: [mcp-server-time]\n"
                     "    tools: [get_current_time, convert_time]\n" + STEP.format(names="get_time"))
    assert found == ["f.yaml:8:17: error: 'get_time' is neither a declared function nor on the tools allow-list "
                     "of an mcp server\n  hint: the allow-lists have: convert_time, get_current_time; add it to a "
                     "server's tools:, or declare it under functions:"]


def test_a_tool_named_like_a_function_is_a_located_error_with_prefix_as_the_fix(tmp_path):
    found = problems(tmp_path, textwrap.dedent("""\
        model: m
        functions:
          get_current_time: {entry: "mcpc_loader_tools:f", parameters: {type: object, properties: {}}}
        mcp:
          time:
            command: [mcp-server-time]
            tools: [get_current_time]
        """) + STEP.format(names="get_current_time"), tools="def f():\n    return 1\n")
    assert len(found) == 1
    assert found[0].startswith("f.yaml:7:13: error: tool 'get_current_time' of mcp server 'time' has the name "
                               "of the function 'get_current_time'")
    assert "prefix: time_" in found[0]


def test_two_servers_offering_one_name_is_a_located_error(tmp_path):
    found = problems(tmp_path, "model: m\nmcp:\n  a:\n    command: [x]\n    tools: [t]\n"
                     "  b:\n    url: http://127.0.0.1:9/mcp\n    tools: [t]\n" + STEP.format(names="t"))
    assert found == ["f.yaml:5:13: error: tool 't' is offered by mcp servers 'a' and 'b'\n"
                     "  hint: give one a prefix (prefix: b_) so its tools are called b_<tool>"]


@pytest.mark.parametrize("server, message", [
    ("    command: [x]\n    url: http://127.0.0.1:9/mcp\n", "f.yaml:3:3: error: mcp server 'time' needs exactly one "
     "of command: (stdio) or url: (streamable HTTP)"),
    ("    command: [x]\n    headers: {A: b}\n", "f.yaml:5:5: error: headers is for url servers; mcp server 'time' "
     "has command"),
    ("    command: [x]\n    timeout: 0s\n", "f.yaml:5:14: error: a timeout of 0 would fail every call"),
    ("    command: [x]\n    start_timeout: 0s\n", "f.yaml:5:20: error: a start_timeout of 0 would fail every start"),
    ("    command: [x]\n    tools: [a, a]\n", "f.yaml:5:16: error: mcp.time.tools lists 'a' twice"),
])
def test_server_declarations_the_schema_cannot_judge(tmp_path, server, message):
    found = problems(tmp_path, "model: m\nmcp:\n  time:\n" + server + STEP.format(names="a"))
    assert found[0].split("\n")[0] == message


def test_the_schema_locates_a_misspelt_key_and_a_secret_without_env(tmp_path):
    found = problems(tmp_path, "model: m\nmcp:\n  time:\n    comand: [x]\n"
                     "  web:\n    url: http://127.0.0.1:9/mcp\n    headers: {Authorization: {prefix: 'Bearer '}}\n"
                     + STEP.format(names="a"))
    text = "\n".join(found)
    assert "f.yaml:4:5" in text and "comand" in text
    assert "f.yaml:7:30" in text and "env" in text


def test_the_shipped_mcp_flow_validates(tmp_path):
    flow = load_flow(ROOT / "flows" / "mcp_time.yaml")
    assert flow.mcp[0].tools == ("get_current_time", "convert_time")


@pytest.mark.parametrize("args", [["--help"], ["validate", "flows/mcp_time.yaml"]])
def test_help_and_validate_import_no_mcp_sdk(args):
    code = ("import sys\nfrom flowrunner._cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'anyio', "
            "'httpx2', 'pydantic') or m.startswith('flowrunner.mcp._session')))")
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, cwd=ROOT, timeout=60)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


def test_validate_counts_the_servers():
    done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "validate", "flows/mcp_time.yaml"], text=True,
                          capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout == "flows/mcp_time.yaml: ok (1 step, 0 functions, 1 mcp server)\n"


BLOCK_MCP = "import sys; sys.modules['mcp'] = None; from flowrunner._cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("args", [
    ["mcp", "serve", "flows/weather.yaml"],
    ["flows/mcp_time.yaml", "--base-url", "http://127.0.0.1:9/v1"],  # live: the server would be started
])
def test_without_the_mcp_sdk_a_command_that_needs_it_says_how_to_install_it(args):
    done = subprocess.run([sys.executable, "-c", BLOCK_MCP, *args], capture_output=True, text=True, cwd=ROOT,
                          env=clean_env(FLOWRUN_NO_LOG="1"), timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "needs the MCP SDK, which is not installed" in done.stderr
    assert "pip install 'flowrunner[mcp]'" in done.stderr
