"""The project's MCP test server: four small tools and the faults an MCP client must survive.

Run it as a process (what a flow's `mcp:` block starts)::

    python -m flowrunner.testing.mcp_server                      # stdio (the default)
    python -m flowrunner.testing.mcp_server --http 8000          # streamable HTTP at http://127.0.0.1:8000/mcp
    python -m flowrunner.testing.mcp_server --fault echo:slow=2 --fault huge

or from tests, in-process over HTTP on a free port (`McpTestServer`), as a child process over HTTP
(`McpTestServerProcess`, for the faults that end the process), or as a stdio command line
(`stdio_command`).

Tools:

- `echo(text)`: the text, as text content.
- `add(a, b)`: the sum, as structured content `{"sum": ...}` (with an output schema) and as text.
- `weather(city)`: a fixed report for the city, as JSON text (the tutorial's answer).
- `fail()`: always an `isError` result.

Faults, `[TOOL:]FAULT[=VALUE]`; with a `TOOL:` prefix a call fault hits that tool only, without one
it hits every tool:

- `slow=SECONDS`: a call answers after SECONDS.
- `hang`: a call is never answered (the server stays up and keeps answering everything else).
- `crash`: the process exits (status 3) in the middle of a call, after a line on stderr.
- `stderr[=N]`: a call writes N lines (default 20) to stderr, then the process exits (status 3).
- `huge[=MB]`: a call's result carries MB megabytes of text (default 16).
- `bad-schema`: a tool's inputSchema is not a valid JSON Schema (`{"type": "no-such-type"}` inside);
  without a tool, an extra tool `broken` is listed with that schema.
- `crash-at-start`: the process writes a line to stderr and exits (status 3) before it answers
  anything (server-wide; a tool prefix is an error).

Arguments are checked against each tool's input schema: a bad call is an `isError` result saying
what is wrong. Nothing but the protocol is written to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("slow", "hang", "crash", "stderr", "huge", "bad-schema", "crash-at-start")
_PROCESS_FAULTS = ("crash", "stderr", "crash-at-start")  # they end the process
_EXIT_STATUS = 3
_BAD_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "no-such-type"}}}
_DEFAULT_HUGE_MB = 16.0
_DEFAULT_STDERR_LINES = 20

TOOLS: dict[str, dict[str, Any]] = {
    "echo": {
        "description": "Echo the text back.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"], "additionalProperties": False},
    },
    "add": {
        "description": "Add two numbers; the sum comes back as structured content.",
        "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                        "required": ["a", "b"], "additionalProperties": False},
        "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]},
    },
    "weather": {
        "description": "Get the current weather in a city (a fixed answer).",
        "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": False},
    },
    "fail": {
        "description": "Always fails (an isError result).",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}


class FaultError(ValueError):
    """A `--fault` that cannot be understood; the message says what is expected."""


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the tool it hits (None = every tool) and its number, if it takes one."""

    kind: str
    tool: str | None = None
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Read `[TOOL:]KIND[=VALUE]`, e.g. `slow=2`, `echo:hang`, `huge=32`."""
        tool, _, rest = text.rpartition(":")
        kind, has_value, raw = rest.partition("=")
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {text!r}: expected [TOOL:]FAULT[=VALUE] with FAULT one of "
                             f"{', '.join(FAULT_KINDS)}")
        if tool and tool not in TOOLS:
            raise FaultError(f"fault {text!r} names no tool of this server: expected one of {', '.join(TOOLS)}")
        if kind == "crash-at-start" and tool:
            raise FaultError(f"fault {text!r}: crash-at-start is server-wide, it takes no TOOL: prefix")
        value: float | None = None
        if has_value:
            if kind not in ("slow", "huge", "stderr"):
                raise FaultError(f"fault {text!r}: {kind} takes no value")
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not 0 <= value < 1e6:
                raise FaultError(f"fault {text!r}: the value must be a number from 0, e.g. {kind}=2")
        elif kind == "slow":
            raise FaultError(f"fault {text!r}: slow needs its seconds, e.g. slow=2")
        return cls(kind, tool or None, value)

    def hits(self, tool: str) -> bool:
        return self.tool is None or self.tool == tool


@dataclass(frozen=True)
class Faults:
    """The faults a server runs with."""

    items: tuple[Fault, ...] = ()

    @classmethod
    def parse(cls, texts: Sequence[str]) -> Faults:
        return cls(tuple(Fault.parse(text) for text in texts))

    def find(self, kind: str, tool: str) -> Fault | None:
        return next((f for f in self.items if f.kind == kind and f.hits(tool)), None)

    def has(self, kind: str) -> bool:
        return any(f.kind == kind for f in self.items)

    def ends_process(self) -> bool:
        return any(f.kind in _PROCESS_FAULTS for f in self.items)


def tool_listing(faults: Faults) -> list[dict[str, Any]]:
    """The tools as `tools/list` gives them, with the bad-schema fault applied."""
    listing = []
    for name, spec in TOOLS.items():
        tool = {"name": name, **spec}
        if any(f.kind == "bad-schema" and f.tool == name for f in faults.items):
            tool["inputSchema"] = _BAD_SCHEMA
        listing.append(tool)
    if any(f.kind == "bad-schema" and f.tool is None for f in faults.items):
        listing.append({"name": "broken", "description": "A tool whose input schema is not a JSON Schema.",
                        "inputSchema": _BAD_SCHEMA})
    return listing


def _die(message: str) -> None:
    sys.stderr.write(f"mcp test server: {message}\n")
    sys.stderr.flush()
    os._exit(_EXIT_STATUS)


def _answer(name: str, arguments: dict[str, Any]) -> tuple[str, Any, bool]:
    """(text, structured content or None, is_error) of a call whose arguments are valid."""
    if name == "echo":
        return str(arguments["text"]), None, False
    if name == "add":
        total = arguments["a"] + arguments["b"]
        return json.dumps({"sum": total}), {"sum": total}, False
    if name == "weather":
        report = {"city": arguments["city"], "temperature": "72", "unit": "fahrenheit",
                  "forecast": ["sunny", "windy"]}
        return json.dumps(report), None, False
    return "fail: this tool always fails", None, True


def _check_arguments(name: str, arguments: dict[str, Any]) -> str | None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(TOOLS[name]["inputSchema"])
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"invalid arguments for {name}{' at ' + where if where else ''}: {error.message}"


def build_server(faults: Faults | None = None) -> Any:
    """The SDK's low-level `Server` with the tools and `faults` (an `mcp.server.Server`)."""
    import anyio
    import mcp_types as types
    from mcp.server import Server

    faults = faults or Faults()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult.model_validate({"tools": tool_listing(faults)})

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})

        def result(text: str, structured: Any = None, is_error: bool = False) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured,
                                        is_error=is_error)

        if name not in TOOLS:
            return result(f"unknown tool {name!r}: this server has {', '.join(TOOLS)}", is_error=True)
        slow = faults.find("slow", name)
        if slow is not None and slow.value:
            await anyio.sleep(slow.value)
        if faults.find("hang", name) is not None:
            await anyio.sleep_forever()
        if faults.find("crash", name) is not None:
            _die(f"crash fault: exiting in the middle of a call to {name}")
        noisy = faults.find("stderr", name)
        if noisy is not None:
            count = int(noisy.value if noisy.value is not None else _DEFAULT_STDERR_LINES)
            for number in range(1, count + 1):
                sys.stderr.write(f"mcp test server: stderr line {number} of {count} (call to {name})\n")
            _die(f"stderr fault: exiting after {count} lines")
        problem = _check_arguments(name, arguments)
        if problem is not None:
            return result(problem, is_error=True)
        text, structured, is_error = _answer(name, arguments)
        huge = faults.find("huge", name)
        if huge is not None:
            size = int((huge.value if huge.value is not None else _DEFAULT_HUGE_MB) * 1024 * 1024)
            text = "x" * size
        return result(text, structured, is_error)

    return Server("flowrunner-test-mcp", version="1", on_list_tools=list_tools, on_call_tool=call_tool)


def serve_stdio(faults: Faults) -> None:
    """Serve over this process's stdin and stdout until stdin closes."""
    import anyio
    from mcp.server.stdio import stdio_server

    if faults.has("crash-at-start"):
        _die("crash-at-start fault: exiting before answering anything")
    server = build_server(faults)

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(run)


def _uvicorn_server(faults: Faults) -> Any:
    import uvicorn

    app = build_server(faults).streamable_http_app(host="127.0.0.1")
    # A hanging call must not hold the shutdown: connections get one second to finish.
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
                            lifespan="on")
    return uvicorn.Server(config)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections wait in the backlog until the server accepts them
    return sock


def serve_http(faults: Faults, port: int) -> None:
    """Serve streamable HTTP on 127.0.0.1:PORT (0: a free port) until interrupted; the URL goes to stderr."""
    if faults.has("crash-at-start"):
        _die("crash-at-start fault: exiting before answering anything")
    sock = _bind(port)
    sys.stderr.write(f"mcp test server: listening on http://127.0.0.1:{sock.getsockname()[1]}/mcp\n")
    sys.stderr.flush()
    _uvicorn_server(faults).run(sockets=[sock])


@dataclass
class McpTestServer:
    """The test server over streamable HTTP in this process, on a free 127.0.0.1 port; a context manager.

    The faults that end the process (crash, stderr, crash-at-start) are refused here: use
    `McpTestServerProcess` for them.
    """

    faults: Sequence[str] = ()
    port: int = 0
    _server: Any = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> McpTestServer:
        parsed = Faults.parse(self.faults)
        if parsed.ends_process():
            raise FaultError("crash, stderr and crash-at-start end the process: use McpTestServerProcess")
        sock = _bind(self.port)
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(parsed)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="McpTestServer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError("the MCP test server did not start")
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = self._thread = None

    def __enter__(self) -> McpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stdio_command(*faults: str) -> list[str]:
    """The command line that runs the test server over stdio with `faults`."""
    command = [sys.executable, "-m", "flowrunner.testing.mcp_server", "--stdio"]
    for fault in faults:
        command += ["--fault", fault]
    return command


@dataclass
class McpTestServerProcess:
    """The test server over streamable HTTP as a child process; a context manager. Its stderr lines are
    kept in `stderr_lines`; `returncode` is set once it has exited."""

    faults: Sequence[str] = ()
    start_timeout: float = 60.0
    url: str = field(default="", init=False)
    stderr_lines: list[str] = field(default_factory=list, init=False)
    _process: subprocess.Popen[str] | None = field(default=None, init=False, repr=False)
    _reader: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self) -> McpTestServerProcess:
        command = stdio_command(*self.faults)
        command[command.index("--stdio")] = "--http"
        command.insert(command.index("--http") + 1, "0")
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self._process is not None and self._process.stderr is not None
            for line in self._process.stderr:
                line = line.rstrip("\n")
                self.stderr_lines.append(line)
                if "listening on " in line and not self.url:
                    self.url = line.split("listening on ", 1)[1]
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, name="McpTestServerProcess", daemon=True)
        self._reader.start()
        ready.wait(self.start_timeout)
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(10)
        if self._process.stderr is not None:
            self._process.stderr.close()

    def __enter__(self) -> McpTestServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowrunner.testing.mcp_server",
        description="The flowrunner MCP test server: tools echo(text), add(a, b), weather(city), fail().",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Faults, ", 1)[1].split("Arguments are", 1)[0].join(["Faults, ", ""]).rstrip()
        + "\n\nExamples:\n  python -m flowrunner.testing.mcp_server --fault weather:slow=2\n"
          "  python -m flowrunner.testing.mcp_server --http 8000 --fault hang",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stdio", action="store_true", help="serve over stdin/stdout (the default)")
    where.add_argument("--http", type=int, metavar="PORT",
                       help="serve streamable HTTP at http://127.0.0.1:PORT/mcp (0: a free port, printed on stderr)")
    parser.add_argument("--fault", action="append", default=[], metavar="FAULT",
                        help="[TOOL:]FAULT[=VALUE], repeatable; see below")
    args = parser.parse_args(argv)
    try:
        faults = Faults.parse(args.fault)
    except FaultError as error:
        parser.error(str(error))
    if args.http is not None and not 0 <= args.http < 65536:
        parser.error(f"--http {args.http}: a port is 0 to 65535")
    try:
        if args.http is not None:
            serve_http(faults, args.http)
        else:
            serve_stdio(faults)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        sys.stderr.write(f"mcp test server: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
