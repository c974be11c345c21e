"""The loader's side of `mcp:`: the servers built, and the names steps list checked against the allow-lists.

A name a step lists that is neither a Python function nor on an allow-list is accepted here when some
server has no allow-list (only its `tools/list` can tell), and checked when the run starts (`attach`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import Location, Problem
from ._config import ServerSpec, all_listed, build_servers, static_names

if TYPE_CHECKING:
    from .._yaml import JsonPath, Positions


class MCPSection:
    """Built by the loader's `_Builder` for a flow with `mcp:`; problems go into the builder's list."""

    def __init__(self, data: dict[str, Any], pos: Positions, flow_dir: str, function_names: list[str],
                 problems: list[Problem]):
        self.pos = pos
        self.problems = problems
        self.servers, found = build_servers(data["mcp"], pos, flow_dir)
        problems.extend(found)
        self.promised = static_names(self.servers)
        self.refs: list[tuple[str, str, Location]] = []
        for name, servers in self.promised.items():
            first = servers[0]
            where = first.tool_locations[first.tools.index(name[len(first.prefix):])] if first.tools else None
            if name in function_names:
                problems.append(Problem(where, f"tool {name!r} of mcp server {first.name!r} has the name of the "
                                        f"function {name!r} declared under functions",
                                        f"give the server a prefix (prefix: {first.name}_) so its tools are "
                                        f"called {first.name}_<tool>, or rename the function"))
            elif len(servers) > 1:
                problems.append(Problem(where, f"tool {name!r} is offered by mcp servers "
                                        f"{' and '.join(repr(s.name) for s in servers)}",
                                        f"give one a prefix (prefix: {servers[1].name}_) so its tools are "
                                        f"called {servers[1].name}_<tool>"))

    def names(self) -> list[str]:
        """Names the servers may offer, for checks of expected calls in `tests:`: the allow-lists' and those
        steps list that only a server can provide."""
        return list(self.promised) + [name for _, name, _ in self.refs]

    def offers(self, name: str, path: JsonPath, step_id: str) -> bool:
        """Whether a step may list `name` (not a Python function): an allow-list has it, or a server without
        one may (then it is checked at the start of the run); False leaves the builder to say it is unknown."""
        if name in self.promised:
            return True
        if all_listed(self.servers):
            listed = ", ".join(sorted(self.promised)) or "none"
            self.problems.append(Problem(self.pos.value(path), f"{name!r} is neither a declared function nor "
                                         "on the tools allow-list of an mcp server",
                                         f"the allow-lists have: {listed}; add it to a server's tools:, or "
                                         "declare it under functions:"))
            return True  # said here, more precisely than the builder's 'unknown function'
        self.refs.append((step_id, name, self.pos.value(path)))
        return True

    def flow_fields(self) -> dict[str, Any]:
        return {"mcp": self.servers, "mcp_refs": tuple(self.refs)}


def server_names(servers: tuple[ServerSpec, ...]) -> str:
    return ", ".join(s.name for s in servers)
