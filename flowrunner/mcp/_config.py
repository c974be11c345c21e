"""The `mcp:` section of a flow: each server's declaration, checked and located by the loader.

Pure data and checks, no MCP SDK: `flowrun validate` reads a flow's servers without starting any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._durations import parse_duration
from .._exceptions import Location, Problem

if TYPE_CHECKING:
    from .._yaml import JsonPath, Positions

DEFAULT_TIMEOUT = 30.0
"""Seconds each call has to answer."""
DEFAULT_START_TIMEOUT = 60.0
"""Seconds a server has to start: spawned (or reached), initialized, its tools listed."""


@dataclass(frozen=True)
class Secret:
    """A value read from an environment variable when the server starts (a header or the child's env)."""

    env: str
    prefix: str = ""

    def value(self) -> str | None:
        raw = os.environ.get(self.env)
        return None if raw is None else self.prefix + raw



@dataclass(frozen=True)
class ServerSpec:
    """One server of the flow's `mcp:`: how to reach it, and which of its tools the flow may use."""

    name: str
    command: tuple[str, ...] = ()
    """stdio: the program and its arguments, started for the run."""
    url: str | None = None
    """streamable HTTP: the endpoint."""
    headers: tuple[tuple[str, str | Secret], ...] = ()
    env: tuple[tuple[str, str | Secret], ...] = ()
    cwd: str | None = None
    tools: tuple[str, ...] | None = None
    """The allow-list (the server's own names); None: every tool it lists."""
    prefix: str = ""
    timeout: float = DEFAULT_TIMEOUT
    start_timeout: float = DEFAULT_START_TIMEOUT
    approve: bool = False
    """`approve: ask`: every call is put to the user first."""
    on_error: Literal["reply", "fail"] = "reply"
    on_invalid_arguments: Literal["reply", "fail"] = "reply"
    location: Location | None = field(default=None, compare=False)
    tool_locations: tuple[Location | None, ...] = field(default=(), compare=False)

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    def describe(self) -> str:
        """How the server is reached, for messages: its command line or its URL."""
        if self.command:
            import shlex

            return shlex.join(self.command)
        return str(self.url)

    def exposed(self, tool: str) -> str:
        """The name a step uses for one of this server's tools."""
        return self.prefix + tool

    def register_secrets(self) -> None:
        """Its header and env values read from the environment are secrets from now on (redacted everywhere,
        the MCP exchanges of a cassette included), whether the server is started or replayed."""
        from .._secrets import register

        for _, value in (*self.headers, *self.env):
            if isinstance(value, Secret):
                raw = os.environ.get(value.env)
                if raw is not None:
                    register(raw, value.env)

    def key(self) -> tuple[Any, ...]:
        """What makes two declarations the same server process (shared by runs and batch workers)."""
        return (self.name, self.command, self.url, self.headers, self.env, self.cwd)


def build_servers(data: dict[str, Any], pos: Positions, flow_dir: str) -> tuple[tuple[ServerSpec, ...], list[Problem]]:
    """The servers of a schema-valid `mcp:` section, and the problems the schema cannot see."""
    servers: list[ServerSpec] = []
    problems: list[Problem] = []
    for name, decl in data.items():
        base: JsonPath = ("mcp", name)
        if ("command" in decl) == ("url" in decl):
            problems.append(Problem(pos.key(base), f"mcp server {name!r} needs exactly one of command: (stdio) "
                                    "or url: (streamable HTTP)",
                                    "e.g. command: [mcp-server-time, --local-timezone, UTC], or "
                                    "url: http://127.0.0.1:8000/mcp"))
            continue
        for key in ("headers",) if "command" in decl else ("env", "cwd"):
            if key in decl:
                problems.append(Problem(pos.key(base + (key,)), f"{key} is for "
                                        f"{'url' if key == 'headers' else 'command'} servers; "
                                        f"mcp server {name!r} has {'command' if key == 'headers' else 'url'}",
                                        f"remove {key}"))
        timeouts = {"timeout": DEFAULT_TIMEOUT, "start_timeout": DEFAULT_START_TIMEOUT}
        for key, default in list(timeouts.items()):
            if key not in decl:
                continue
            try:
                timeouts[key] = parse_duration(decl[key])
            except ValueError as exc:
                problems.append(Problem(pos.value(base + (key,)), str(exc), "write something like 30s"))
            if timeouts[key] == 0:
                problems.append(Problem(pos.value(base + (key,)), f"a {key} of 0 would fail every "
                                        f"{'call' if key == 'timeout' else 'start'}",
                                        f"give the longest it may take, e.g. 30s, or leave {key} out"))
                timeouts[key] = default
        tools = decl.get("tools")  # the schema has seen that no name is listed twice
        cwd = decl.get("cwd")
        servers.append(ServerSpec(
            name=name, command=tuple(decl.get("command", ())), url=decl.get("url"),
            headers=tuple((k, _value(v)) for k, v in decl.get("headers", {}).items()),
            env=tuple((k, _value(v)) for k, v in decl.get("env", {}).items()),
            cwd=str(os.path.join(flow_dir, cwd)) if cwd is not None else None,
            tools=tuple(tools) if tools is not None else None, prefix=decl.get("prefix", ""), timeout=timeouts["timeout"],
            start_timeout=timeouts["start_timeout"],
            approve=decl.get("approve") == "ask", on_error=decl.get("on_error", "reply"),
            on_invalid_arguments=decl.get("on_invalid_arguments", "reply"), location=pos.key(base),
            tool_locations=tuple(pos.value(base + ("tools", i)) for i in range(len(tools or ()))),
        ))
    return tuple(servers), problems


def _value(raw: Any) -> str | Secret:
    if isinstance(raw, dict):
        return Secret(env=raw["env"], prefix=raw.get("prefix", ""))
    return str(raw)


def static_names(servers: tuple[ServerSpec, ...]) -> dict[str, list[ServerSpec]]:
    """The step-facing names the allow-lists promise, each with the servers that promise it."""
    names: dict[str, list[ServerSpec]] = {}
    for server in servers:
        for tool in server.tools or ():
            names.setdefault(server.exposed(tool), []).append(server)
    return names


def all_listed(servers: tuple[ServerSpec, ...]) -> bool:
    """True when every server has an allow-list: then no tool can appear that the flow does not name."""
    return all(server.tools is not None for server in servers)
