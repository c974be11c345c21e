"""MCP: tools from MCP servers in flows, and flows served as MCP tools (`flowrun mcp serve`, in `serve`).

Tools from MCP servers, as the flow's `mcp:` declares them: one seam, `attach`, used by the engine.

`attach(flow, stack)` gives the flow its servers' tools as `FunctionSpec`s (name, description, input
schema from `tools/list`; a call goes out as `tools/call`), so validation, `on_invalid_arguments`,
`on_error` and the record are the engine's, as for Python functions. Where the tools come from:

- inside a cassette being replayed: from the cassette (`_tape`), no server started, nothing installed;
- inside a cassette being recorded: from the live servers, every exchange recorded into it;
- otherwise: from the live servers.

Live servers are shared in the process (`_Registry`): started by the first run that needs one, stopped
when the last run using it ends (`hold` keeps them for a whole batch), and at exit at the latest.

This module imports no part of the `mcp` SDK: only `_session` does, when a server is started.
"""

from __future__ import annotations

import atexit
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .._exceptions import CassetteMissError, FlowValidationError, FunctionError, MCPServerError, Problem

if TYPE_CHECKING:
    from .._model import Flow, FunctionSpec
    from ._config import ServerSpec
    from ._session import LiveServer
    from ._tape import Tape

__all__ = ["attach", "hold", "started"]


class _Registry:
    """The live servers of the process, by declaration (`ServerSpec.key`), with how many runs use each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[tuple[Any, ...], tuple[LiveServer, int]] = {}
        self.starts = 0
        atexit.register(self.stop_all)

    def acquire(self, spec: ServerSpec) -> LiveServer:
        with self._lock:  # one start per server, however many batch workers ask at once
            held = self._servers.get(spec.key())
            if held is not None and held[0].alive:
                self._servers[spec.key()] = (held[0], held[1] + 1)
                return held[0]
            require_sdk(f"mcp server {spec.name!r}")
            from ._session import LiveServer

            server = LiveServer(spec)
            server.start()
            self.starts += 1
            self._servers[spec.key()] = (server, 1 + (held[1] if held is not None else 0))
            if held is not None:
                held[0].stop()
            return server

    def release(self, spec: ServerSpec, server: LiveServer) -> None:
        with self._lock:
            held = self._servers.get(spec.key())
            if held is None or held[0] is not server:
                server.stop()
                return
            if held[1] > 1:
                self._servers[spec.key()] = (server, held[1] - 1)
                return
            del self._servers[spec.key()]
        server.stop()

    def stop_all(self) -> None:
        with self._lock:
            servers = [server for server, _ in self._servers.values()]
            self._servers.clear()
        for server in servers:
            server.stop()


_registry = _Registry()


SDK_HINT = "pip install 'flowrunner[mcp]'"


def require_sdk(what: str) -> None:
    """UsageError unless the `mcp` SDK can be imported: `what` needs it (a live server, `flowrun mcp serve`)."""
    try:
        import mcp  # noqa: F401 - what uses it imports it next anyway
    except ImportError:
        from .._exceptions import UsageError

        raise UsageError(f"{what} needs the MCP SDK, which is not installed (mcp)\n  hint: {SDK_HINT}") from None


def started() -> int:
    """How many server processes (or HTTP sessions) this process has started: one per server per batch."""
    return _registry.starts


class _Endpoint:
    """A server as a run sees it: its tools, and a way to call them (live, recording, or replayed)."""

    def __init__(self, spec: ServerSpec, live: LiveServer | None, tape: Tape | None):
        self.spec, self.live, self.tape = spec, live, tape
        if live is not None:
            self.tools = live.tools
            if tape is not None:
                tape.record_tools(spec.name, live.tools)
        else:
            assert tape is not None
            tools = tape.tools(spec.name)
            if tools is None:
                raise CassetteMissError(f"cassette {tape.path} holds no tools of mcp server {spec.name!r}: it was "
                                        f"recorded without it\n  hint: record it again (--record-mode all) with the "
                                        "server installed")
            self.tools = tools

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        name = self.spec.name
        if self.live is None:
            assert self.tape is not None
            entry = self.tape.play(name, tool, arguments)
            if entry is None:
                raise CassetteMissError(self.tape.describe_miss(name, tool, arguments))
            if "failure" in entry:
                raise MCPServerError(entry["failure"])
            if "error" in entry:
                raise FunctionError(entry["error"], entry.get("reason"))
            result: dict[str, Any] = entry["result"]
            return result
        try:
            result = self.live.call(tool, arguments)
        except FunctionError as exc:
            if self.tape is not None:
                self.tape.record_call(name, tool, arguments, error=str(exc), reason=exc.reason)
            raise
        except MCPServerError as exc:
            if self.tape is not None:
                self.tape.record_call(name, tool, arguments, failure=str(exc))
            raise
        if self.tape is not None:
            self.tape.record_call(name, tool, arguments, result=result)
        return result


def _current_tape() -> Tape | None:
    """The MCP exchanges of the cassette in use (made on first need), or None outside a cassette."""
    from .._cassette import active_cassette

    serializer = active_cassette()
    if serializer is None:
        return None
    if serializer.mcp_tape is None:
        from ._tape import Tape

        path = getattr(serializer, "path", None) or "the cassette"
        serializer.mcp_tape = Tape(serializer.mcp, replay=serializer.replay_only,
                                   record_mode=serializer.record_mode, path=str(path))
    tape: Tape = serializer.mcp_tape
    return tape


def _endpoints(flow: Flow, stack: ExitStack) -> dict[str, _Endpoint]:
    tape = _current_tape()
    endpoints = {}
    for spec in flow.mcp:
        spec.register_secrets()
        if tape is not None and tape.replay:
            endpoints[spec.name] = _Endpoint(spec, None, tape)
            continue
        live = _registry.acquire(spec)
        stack.callback(_registry.release, spec, live)
        endpoints[spec.name] = _Endpoint(spec, live, tape)
    return endpoints


@contextmanager
def hold(flow: Flow) -> Iterator[None]:
    """Keep the flow's live servers running for the whole block (a batch: started once, not per input)."""
    with ExitStack() as stack:
        tape = _current_tape()
        if not (tape is not None and tape.replay):
            _endpoints(flow, stack)
        yield


def attach(flow: Flow, stack: ExitStack) -> Flow:
    """The flow with the tools its steps list from its servers among its functions; the servers are held
    until `stack` closes. FlowValidationError (located) for a name no source or several sources offer;
    MCPServerError for a server that cannot be started or lists a tool the flow cannot use."""
    from .._model import FunctionSpec

    endpoints = _endpoints(flow, stack)
    offers: dict[str, list[tuple[_Endpoint, dict[str, Any]]]] = {}
    problems: list[Problem] = []
    for endpoint in endpoints.values():
        spec = endpoint.spec
        listed = {tool["name"]: tool for tool in endpoint.tools}
        for index, name in enumerate(spec.tools or ()):
            if name not in listed:
                problems.append(Problem(spec.tool_locations[index] if index < len(spec.tool_locations) else None,
                                        f"mcp server {spec.name!r} lists no tool {name!r}",
                                        f"its tools: {', '.join(sorted(listed)) or 'none'}"))
        for name, tool in listed.items():
            if spec.tools is None or name in spec.tools:
                offers.setdefault(spec.exposed(name), []).append((endpoint, tool))
    where = {name: location for _, name, location in flow.mcp_refs}
    wanted = dict.fromkeys(name for step in flow.steps for name in step.functions)
    functions = dict(flow.functions)
    for name in wanted:
        sources = offers.get(name, [])
        python = name in flow.functions
        if not sources and not python:
            servers = "; ".join(f"{e.spec.name} offers {', '.join(sorted(e.spec.exposed(t['name']) for t in e.tools if e.spec.tools is None or t['name'] in e.spec.tools)) or 'nothing'}"
                                for e in endpoints.values())
            problems.append(Problem(where.get(name), f"no function or mcp tool is called {name!r}",
                                    f"{servers}; or declare it under functions:"))
        elif len(sources) + python > 1:
            who = [f"mcp server {e.spec.name!r}" for e, _ in sources] + (["the function under functions:"] if python else [])
            problems.append(Problem(where.get(name) or sources[0][0].spec.location,
                                    f"{name!r} is offered by {' and by '.join(who)}",
                                    f"give the server a prefix (e.g. prefix: {sources[-1][0].spec.name}_) and list "
                                    f"{sources[-1][0].spec.name}_{name} in the step"))
        elif sources:
            endpoint, tool = sources[0]
            functions[name] = _spec(FunctionSpec, name, endpoint, tool)
    if problems:
        raise FlowValidationError(problems)
    return replace(flow, functions=functions)


def _spec(make: Callable[..., FunctionSpec], name: str, endpoint: _Endpoint, tool: dict[str, Any]) -> FunctionSpec:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    spec = endpoint.spec
    schema = tool.get("inputSchema")
    problem = None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        problem = "its input schema is not a JSON Schema of type object"
    else:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problem = f"its input schema is not a valid JSON Schema: {exc.message}"
    if problem is not None:
        raise MCPServerError(f"mcp server {spec.name!r} ({spec.describe()}) lists tool {tool['name']!r}, but "
                             f"{problem}\n  hint: leave the tool out of the step's functions, or fix the server")
    assert isinstance(schema, dict)
    parameters = dict(schema)
    if "properties" not in parameters and "additionalProperties" not in parameters:
        parameters["additionalProperties"] = True  # the server's schema says any argument is fine
    server_tool = tool["name"]

    def call(**arguments: Any) -> Any:
        from ._result import model_value

        kept = endpoint.call(server_tool, arguments)
        if kept.get("is_error"):
            text = kept.get("text") or "(no text)"
            short = text if len(text) <= 2000 else text[:2000] + "..."
            raise FunctionError(f"tool {server_tool!r} of mcp server {spec.name!r} returned an error: {short}", short)
        return model_value(kept)

    description = tool.get("description")
    return make(name=name, entry=f"mcp:{spec.name}/{server_tool}", parameters=parameters,
                description=description if isinstance(description, str) else None, func=call,
                on_invalid_arguments=spec.on_invalid_arguments, on_error=spec.on_error, timeout=None,
                location=spec.location, approve=spec.approve, server=spec.name)
