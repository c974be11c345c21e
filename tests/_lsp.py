"""A minimal Language Server Protocol client over stdio, enough to ask yaml-language-server what an
editor would show for a file: its diagnostics, and the hover text at a position."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

SETTINGS = {"validate": True, "hover": True, "completion": True, "schemaStore": {"enable": False}}


class LanguageServer:
    def __init__(self, command: list[str]):
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._request("initialize", {
            "processId": None, "rootUri": Path.cwd().as_uri(),
            "capabilities": {"textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]}},
                             "workspace": {"configuration": True}}})
        self._wait(lambda m: m.get("id") == ready)
        self._send({"method": "initialized", "params": {}})
        self._send({"method": "workspace/didChangeConfiguration", "params": {"settings": {"yaml": SETTINGS}}})

    def diagnostics(self, path: Path) -> list[tuple[int, str]]:
        """(line, message) for each problem the server reports in `path` (lines from 1)."""
        uri = path.resolve().as_uri()
        self._send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": path.read_text(encoding="utf-8")}}})
        found = self._wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                           and m["params"]["uri"] == uri)
        return [(d["range"]["start"]["line"] + 1, d["message"]) for d in found["params"]["diagnostics"]]

    def hover(self, path: Path, line: int, column: int) -> str:
        """The hover text at `line`:`column` (from 1) of an opened file."""
        asked = self._request("textDocument/hover", {"textDocument": {"uri": path.resolve().as_uri()},
                                                     "position": {"line": line - 1, "character": column - 1}})
        result = self._wait(lambda m: m.get("id") == asked).get("result") or {}
        return str((result.get("contents") or {}).get("value", ""))

    def close(self) -> None:
        self._process.kill()
        self._process.wait(5)
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def _request(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        self._send({"id": self._next_id, "method": method, "params": params})
        return self._next_id

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self._process.stdin is not None
        self._process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        self._process.stdin.flush()

    def _wait(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            try:
                message = self._messages.get(timeout=max(0.0, ends - time.monotonic()))
            except queue.Empty:
                break
            if message.get("method") == "workspace/configuration":  # the server asks for its settings
                self._send({"id": message["id"], "result": [SETTINGS] * len(message["params"]["items"])})
            elif "method" in message and "id" in message:  # other requests of the server's: acknowledged
                self._send({"id": message["id"], "result": None})
            elif wanted(message):
                return message
        raise TimeoutError("yaml-language-server did not answer in time")

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while True:
            headers = {}
            while (line := stream.readline().decode().strip()):
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
            if "content-length" not in headers:
                return
            self._messages.put(json.loads(stream.read(int(headers["content-length"]))))
