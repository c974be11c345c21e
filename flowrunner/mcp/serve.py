"""Flows served as MCP tools (`flowrun mcp serve`): each flow one tool, over stdio or streamable HTTP.

A flow's tool takes its name from the flow's name (sanitised to what MCP clients and model APIs
accept), its description from the flow's, and its input schema from the flow's declared inputs
(`env:` inputs are not exposed: the server's environment gives them). A call runs the flow in a
worker thread, so calls run concurrently, and answers with its outputs: one text block (the output
itself when there is one, else the outputs as a JSON object) plus `structuredContent` holding the
outputs. A failed run, bad arguments, or anything else that goes wrong is an `isError` result
saying what happened; the server itself goes on.

How a flow runs (which server, which cassette) is the caller's choice: `FlowServer` takes a
`run_flow(flow, inputs) -> RunRecord` function. Nothing here prints: log lines go to `log`.
"""

from __future__ import annotations

import copy
import re
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import FlowrunnerError, UsageError

if TYPE_CHECKING:
    from .._model import Flow
    from .._record import RunRecord

RunFlow = Callable[["Flow", dict[str, Any]], "RunRecord"]
Log = Callable[[str], None]

NAME_LIMIT = 64
"""MCP allows 128 characters, but the tools reach model APIs, and OpenAI's function names stop at 64."""
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def tool_name(flow_name: str) -> str:
    """The flow's name as a tool name: letters, digits, `_` and `-` only (`my flow.v2` -> `my_flow_v2`),
    at most 64 characters; `flow` if nothing is left."""
    name = _NOT_IN_NAME.sub("_", flow_name).strip("_-")[:NAME_LIMIT].rstrip("_-")
    return name or "flow"


def input_schema(flow: Flow) -> dict[str, Any]:
    """The JSON Schema of a call's arguments: one property per declared input, except `env:` ones."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in flow.inputs.items():
        if spec.env is not None:
            continue
        schema = copy.deepcopy(spec.schema)
        if spec.description and "description" not in schema:
            schema["description"] = spec.description
        if not spec.required:
            schema.setdefault("default", copy.deepcopy(spec.default))
        properties[name] = schema
        if spec.required:
            required.append(name)
    schema_out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema_out["required"] = required
    return schema_out


def output_schema(flow: Flow) -> dict[str, Any]:
    """The JSON Schema of `structuredContent`: every output, a string."""
    names = list(flow.outputs) or [flow.steps[-1].id]  # outputs default to the last step's content
    return {"type": "object", "properties": {name: {"type": "string"} for name in names}, "required": names}


@dataclass(frozen=True)
class FlowTool:
    """One flow as an MCP tool."""

    name: str
    flow: Flow
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]

    @property
    def description(self) -> str:
        return self.flow.description or f"Run the flowrunner flow {self.flow.name!r} ({self.flow.path.name})."

    def listing(self) -> dict[str, Any]:
        """The tool as `tools/list` gives it."""
        return {"name": self.name, "description": self.description, "inputSchema": self.input_schema,
                "outputSchema": self.output_schema}


def flow_tools(flows: Sequence[Flow]) -> list[FlowTool]:
    """A tool per flow; two flows that would have one tool name are an error naming both files."""
    tools: dict[str, FlowTool] = {}
    for flow in flows:
        name = tool_name(flow.name)
        other = tools.get(name)
        if other is not None:
            raise UsageError(
                f"two flows would be the MCP tool {name!r}: {other.flow.path} (name {other.flow.name!r}) and "
                f"{flow.path} (name {flow.name!r})\n  hint: give one of them another `name:`, or serve them "
                "from separate servers")
        tools[name] = FlowTool(name, flow, input_schema(flow), output_schema(flow))
    return list(tools.values())


@dataclass(frozen=True)
class ToolResult:
    """What a call answers: text, the outputs (or None), and whether it is an error."""

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False


def _argument_problem(tool: FlowTool, arguments: dict[str, Any]) -> str | None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(tool.input_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    expected = ", ".join(f"{name}{'' if name in tool.input_schema.get('required', []) else ' (optional)'}"
                         for name in tool.input_schema["properties"]) or "no arguments"
    return (f"invalid arguments for {tool.name}{' at ' + where if where else ''}: {error.message} "
            f"(expected: {expected})")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class FlowServer:
    """The flows' tools and how to call them; `mcp_server()` is the SDK server that serves them."""

    def __init__(self, tools: Sequence[FlowTool], run_flow: RunFlow, log: Log = lambda line: None):
        self.tools = {tool.name: tool for tool in tools}
        self.run_flow = run_flow
        self.log = log

    def call(self, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        """Run the tool's flow with `arguments`; every failure is an error result, never an exception."""
        from .._json import dumps
        from .._secrets import redact, redact_data

        tool = self.tools.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}: this server has {', '.join(self.tools) or 'none'}",
                              is_error=True)
        arguments = dict(arguments or {})
        problem = _argument_problem(tool, arguments)
        if problem is not None:
            self.log(f"{name}: {problem}")
            return ToolResult(problem, is_error=True)
        self.log(f"{name}: running {tool.flow.path}")
        start = time.monotonic()
        try:
            record = self.run_flow(tool.flow, arguments)
        except FlowrunnerError as exc:
            message = redact(str(exc))
            self.log(f"{name}: failed: {_clip(message)}")
            return ToolResult(f"error: {message}", is_error=True)
        except Exception as exc:  # a bug, not the caller's: said, logged whole, and the server goes on
            self.log(f"{name}: internal error\n{redact(''.join(traceback.format_exception(exc)))}")
            return ToolResult(f"internal error in flowrunner: {type(exc).__name__}: {redact(str(exc))}",
                              is_error=True)
        took = f"{time.monotonic() - start:.1f}s"
        if record.error is not None:
            step = f" in step {record.error['step']!r}" if record.error.get("step") else ""
            message = redact(f"error{step}: {record.error['message']}")
            self.log(f"{name}: failed after {took}: {_clip(message)}")
            return ToolResult(message, is_error=True)
        outputs = redact_data(dict(record.outputs))
        text = next(iter(outputs.values())) if len(outputs) == 1 else dumps(outputs, indent=2)
        self.log(f"{name}: succeeded in {took}")
        return ToolResult(text, outputs)

    def mcp_server(self) -> Any:
        """The SDK's low-level `mcp.server.Server` serving the tools (each call in a worker thread)."""
        import anyio
        import mcp_types as types
        from mcp.server import Server

        from .. import __version__

        listing = types.ListToolsResult.model_validate({"tools": [t.listing() for t in self.tools.values()]})

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return listing

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            result = await anyio.to_thread.run_sync(self.call, params.name, params.arguments)
            return types.CallToolResult(content=[types.TextContent(text=result.text)],
                                        structured_content=result.structured, is_error=result.is_error)

        return Server("flowrunner", version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)


def serve_stdio(server: FlowServer) -> None:
    """Serve over stdin and stdout until stdin closes (the SDK points fd 1 at stderr meanwhile, so
    nothing a flow prints can reach the protocol)."""
    import anyio
    from mcp.server.stdio import stdio_server

    sdk_server = server.mcp_server()

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await sdk_server.run(read_stream, write_stream, sdk_server.create_initialization_options())

    anyio.run(run)


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:PORT (0: a free port); a port in use is a usage error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}\n"
                         "  hint: choose another --http port (0 picks a free one)") from None
    return sock


def serve_http(server: FlowServer, sock: socket.socket) -> None:
    """Serve streamable HTTP at http://127.0.0.1:PORT/mcp on `sock` until interrupted."""
    import uvicorn

    app = server.mcp_server().streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
