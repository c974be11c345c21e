"""MCP exchanges in a cassette: the tools each server listed, and every call with its outcome.

They live under a top-level `mcp` key of the cassette file, beside vcrpy's `interactions` (see
`CheckedYamlSerializer`). A replay answers `tools/list` and `tools/call` from here and starts no
server; a call is matched on server, tool and arguments (sorted-key JSON, secrets redacted), the
oldest unplayed recording playing once, as HTTP requests are.

    mcp:
      servers:
        time: {tools: [{name: get_current_time, description: ..., inputSchema: {...}}]}
      calls:
      - {server: time, tool: get_current_time, arguments: {timezone: UTC},
         result: {text: ..., structured: {...}, is_error: false}}
      - {server: time, tool: ..., arguments: ..., error: ..., reason: ...}    # refused, or no answer in time
      - {server: time, tool: ..., arguments: ..., failure: ...}               # the server was gone
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .._cassette import RUN_HINT, canonical_json, first_difference
from .._schema import describe
from .._secrets import redact_data

_OUTCOMES = ("result", "error", "failure")


def check_section(section: Any) -> str | None:
    """What is wrong with a cassette's `mcp` section, or None (read as `check_cassette` reads the rest)."""
    if not isinstance(section, dict):
        return f"expected a mapping with servers and calls, got {describe(section)}"
    servers = section.get("servers", {})
    if not isinstance(servers, dict):
        return f"servers: expected a mapping, got {describe(servers)}"
    for name, server in servers.items():
        tools = server.get("tools") if isinstance(server, dict) else None
        if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                  for t in tools):
            return f"servers.{name}: expected tools: a list of tools, each with a name"
    calls = section.get("calls", [])
    if not isinstance(calls, list):
        return f"calls: expected a list, got {describe(calls)}"
    for number, call in enumerate(calls, start=1):
        where = f"call {number} of {len(calls)}"
        if not isinstance(call, dict):
            return f"{where}: expected a mapping, got {describe(call)}"
        for key in ("server", "tool"):
            if not isinstance(call.get(key), str):
                return f"{where}: {key}: expected text, got {describe(call.get(key))}"
        if not isinstance(call.get("arguments"), dict):
            return f"{where}: arguments: expected a mapping, got {describe(call.get('arguments'))}"
        outcomes = [key for key in _OUTCOMES if key in call]
        if len(outcomes) != 1:
            return f"{where}: expected exactly one of result, error, failure"
        result = call.get("result")
        if "result" in call and not (isinstance(result, dict) and isinstance(result.get("text"), str)):
            return f"{where}: result: expected a mapping with text"
    return None


def _key(server: str, tool: str, arguments: dict[str, Any]) -> tuple[str, str, str]:
    return server, tool, canonical_json(redact_data(arguments))


class Tape:
    """One use of a cassette's MCP exchanges: played from (a replay) or recorded into (anything else)."""

    def __init__(self, loaded: dict[str, Any] | None, *, replay: bool, record_mode: str, path: str):
        self.replay = replay
        self.path = path
        self.record_mode = record_mode
        keep = loaded is not None and record_mode != "all"
        self.servers: dict[str, Any] = dict(loaded.get("servers", {})) if keep and loaded else {}
        self.calls: list[dict[str, Any]] = list(loaded.get("calls", [])) if keep and loaded else []
        self._unplayed: dict[tuple[str, str, str], deque[int]] = {}
        for index, call in enumerate(self.calls):
            self._unplayed.setdefault(_key(call["server"], call["tool"], call["arguments"]), deque()).append(index)
        self._recorded_keys = set(self._unplayed)
        self._lock = threading.Lock()

    # -- replaying ------------------------------------------------------------------------------

    def tools(self, server: str) -> list[dict[str, Any]] | None:
        entry = self.servers.get(server)
        return list(entry["tools"]) if isinstance(entry, dict) else None

    def play(self, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The oldest unplayed recording of this call, or None."""
        with self._lock:
            waiting = self._unplayed.get(_key(server, tool, arguments))
            return self.calls[waiting.popleft()] if waiting else None

    def describe_miss(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        """Which call is not in the cassette, and how it differs from the closest recording (as HTTP misses)."""
        from .._json import dumps

        lines = [f"the MCP call {server}.{tool}({dumps(redact_data(arguments))}) is not in cassette {self.path} "
                 "(record mode 'none')"]
        same = [(n, c) for n, c in enumerate(self.calls, start=1) if c["server"] == server and c["tool"] == tool]
        if same:
            live = redact_data(arguments)
            import difflib

            wanted = canonical_json(live)
            number, closest = max(same, key=lambda item: difflib.SequenceMatcher(
                None, canonical_json(item[1]["arguments"]), wanted, autojunk=False).ratio())
            played = _key(server, tool, closest["arguments"]) == _key(server, tool, arguments)
            if played:
                lines.append("  every recording of it was already played in this run")
            else:
                lines.append(f"  closest recording (call {number} of {len(self.calls)}) differs: "
                             f"{first_difference(closest['arguments'], live, 'arguments')}")
        else:
            recorded = sorted({f"{c['server']}.{c['tool']}" for c in self.calls})
            lines.append(f"  no call of {server}.{tool} was recorded (recorded: {', '.join(recorded) or 'none'})")
        lines.append(RUN_HINT)
        return "\n".join(lines)

    # -- recording ------------------------------------------------------------------------------

    def record_tools(self, server: str, tools: list[dict[str, Any]]) -> None:
        with self._lock:
            self.servers[server] = {"tools": redact_data(tools)}

    def record_call(self, server: str, tool: str, arguments: dict[str, Any], **outcome: Any) -> None:
        entry = {"server": server, "tool": tool, "arguments": redact_data(arguments), **redact_data(outcome)}
        with self._lock:
            key = _key(server, tool, arguments)
            if self.record_mode == "new_episodes" and key in self._recorded_keys:
                return  # kept from the cassette as it was
            self.calls.append(entry)

    def section(self) -> dict[str, Any]:
        with self._lock:
            return {"servers": dict(self.servers), "calls": list(self.calls)}
