"""Live MCP servers: each one a session of the official `mcp` SDK, run on one background event loop.

The SDK is async and the engine is not: a daemon thread runs an asyncio loop for the whole process, each
server is owned by one task on it (the SDK's context managers must be entered and left by the same task),
and the engine's threads submit `tools/call`s to that loop and wait, each wait bounded. A server's stderr
goes through a pipe into a bounded buffer, so its last lines can be shown when it fails.

A stdio server is started through a tiny launcher (`_LAUNCHER`) that asks Linux to kill it when flowrun
dies (`PR_SET_PDEATHSIG`), then becomes the server (exec): `kill -9` of flowrun leaves no server behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack
from typing import Any, Coroutine, TypeVar

from .._durations import format_duration
from .._exceptions import FunctionError, MCPServerError
from .._secrets import redact, register
from ._config import Secret, ServerSpec
from ._result import compact_result

T = TypeVar("T")

STDERR_LINES = 20
"""How many of a server's last stderr lines a failure shows."""
_STDERR_LINE_CHARS = 500
_STOP_WAIT = 12.0
"""Seconds a server has to stop: the SDK closes stdin, waits 2 s, then SIGTERM, 2 s, then SIGKILL."""
_MAX_TOOL_PAGES = 50

# Run with `python -I -S -c`: become the server, killed (SIGKILL) when the flowrun process that started it
# dies, however it dies. If flowrun is already gone (the parent changed) the server is not started at all.
_LAUNCHER = """\
import ctypes, os, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot start {sys.argv[2]!r}: {exc.strerror}\\n")
    sys.exit(127)
"""


class _Loop:
    """The process's background event loop (a daemon thread), started on first use."""

    _instance: _Loop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="flowrunner mcp", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Loop()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """The coroutine's result, run on the loop; TimeoutError (and the coroutine cancelled) past `timeout`."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError from None


class StderrTail:
    """A pipe for a server's stderr, read by a thread into a bounded buffer of its last lines."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._lines: deque[str] = deque(maxlen=STDERR_LINES)
        self._reader = threading.Thread(target=self._read, args=(os.fdopen(read_fd, "rb"),),
                                        name="flowrunner mcp stderr", daemon=True)
        self._reader.start()

    def _read(self, pipe: Any) -> None:
        with pipe:
            for raw in iter(lambda: pipe.readline(64 * 1024), b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._lines.append(line if len(line) <= _STDERR_LINE_CHARS else line[:_STDERR_LINE_CHARS] + "...")

    def close_writer(self) -> None:
        """Our copy of the write end: once the server has its own, EOF then means the server is gone."""
        if not self.writer.closed:
            self.writer.close()

    def text(self, wait: float = 0.0) -> str:
        if wait:
            self._reader.join(wait)
        return "\n".join(redact(line) for line in list(self._lines))


def _resolve(value: str | Secret, server: str, what: str) -> str:
    if isinstance(value, str):
        return value
    resolved = value.value()
    if resolved is None:
        raise MCPServerError(f"mcp server {server!r}: {what} reads environment variable {value.env}, which is "
                             f"not set\n  hint: export {value.env}=...")
    register(resolved[len(value.prefix):], value.env)
    return resolved


class LiveServer:
    """One running server: started by `start`, called from any thread by `call`, ended by `stop`."""

    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.tools: list[dict[str, Any]] = []
        self.pid: int | None = None
        self._loop = _Loop.get()
        self._stderr: StderrTail | None = None
        self._session: Any = None
        self._stop_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._finished = threading.Event()
        self._failure: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server, initialize the session and list its tools: MCPServerError if it cannot."""
        spec = self.spec
        if spec.command:
            program = spec.command[0]
            path = dict(spec.env).get("PATH")
            if not isinstance(path, str):
                path = os.environ.get("PATH")
            if shutil.which(program, path=path) is None and not os.path.isfile(program):
                raise MCPServerError(f"mcp server {spec.name!r}: cannot start `{spec.describe()}`: {program!r} is "
                                     "not an executable on PATH\n  hint: install the server (e.g. pip install "
                                     f"{program}), or give its full path in command:")
            self._stderr = StderrTail()
        ready: Future[list[dict[str, Any]]] = Future()
        self._loop.loop.call_soon_threadsafe(self._begin, ready)
        try:
            self.tools = ready.result(spec.start_timeout + 1)
        except FutureTimeout:
            self.stop()
            raise self._error(f"did not start within {format_duration(spec.start_timeout)} (start_timeout)") from None
        except TimeoutError:
            self.stop()
            raise self._error(f"did not start within {format_duration(spec.start_timeout)} (start_timeout)") from None
        except MCPServerError:
            self.stop()
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever the SDK raised, said for the user
            self.stop()
            raise self._error(f"did not start: {_reason(exc)}") from None

    def _begin(self, ready: Future[list[dict[str, Any]]]) -> None:
        self._stop_event = asyncio.Event()
        self._task = self._loop.loop.create_task(self._own(ready))
        self._task.add_done_callback(lambda _: self._finished.set())

    async def _own(self, ready: Future[list[dict[str, Any]]]) -> None:
        assert self._stop_event is not None
        try:
            import anyio
            from mcp.client.session import ClientSession

            async with AsyncExitStack() as stack:
                # Entered here, left at the end: a cancel scope around them would be left before them.
                streams = await stack.enter_async_context(self._transport())
                if self._stderr is not None:
                    self._stderr.close_writer()
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                with anyio.fail_after(self.spec.start_timeout):
                    await session.initialize()
                    tools = await _list_tools(session)
                self._session = session
                if not ready.done():
                    ready.set_result(tools)
                await self._stop_event.wait()
        except BaseException as exc:  # noqa: BLE001 - kept to be said where it is waited for
            self._failure = exc
            if not ready.done():
                ready.set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._session = None
            if self._stderr is not None:
                self._stderr.close_writer()

    def _transport(self) -> Any:
        spec = self.spec
        if spec.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            env = {key: _resolve(value, spec.name, f"env {key}") for key, value in spec.env}
            command = list(spec.command)
            if sys.platform.startswith("linux"):
                command = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *command]
            params = StdioServerParameters(command=command[0], args=command[1:], env=env or None, cwd=spec.cwd)
            assert self._stderr is not None
            return stdio_client(params, errlog=self._stderr.writer)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {key: _resolve(value, spec.name, f"header {key}") for key, value in spec.headers}
        client = create_mcp_http_client(headers=headers or None)
        assert spec.url is not None
        return _with_client(client, streamable_http_client(spec.url, http_client=client))

    def stop(self) -> None:
        """End the session and the server (bounded: the SDK kills what does not stop)."""
        if self._stop_event is not None and not self._finished.is_set():
            event = self._stop_event
            self._loop.loop.call_soon_threadsafe(event.set)
            if not self._finished.wait(_STOP_WAIT) and self._task is not None:
                self._loop.loop.call_soon_threadsafe(self._task.cancel)
                self._finished.wait(_STOP_WAIT)
        if self._stderr is not None:
            self._stderr.close_writer()

    @property
    def alive(self) -> bool:
        return self._session is not None and not self._finished.is_set()

    # -- calls ----------------------------------------------------------------------------------

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """`tools/call`: the result, compacted (`compact_result`). FunctionError when the server answers
        with an error or not in time; MCPServerError when the server is gone."""
        spec = self.spec
        session = self._session
        if session is None or self._finished.is_set():
            raise self._error("is not running (it stopped or crashed before this call)")
        try:
            result = self._loop.run(self._call(session, tool, arguments), spec.timeout + 5)
        except TimeoutError:
            result = None
        if result is None:
            raise FunctionError(f"tool {tool!r} of mcp server {spec.name!r} did not answer within its timeout of "
                                f"{format_duration(spec.timeout)}",
                                f"the tool did not answer within {format_duration(spec.timeout)}")
        if isinstance(result, BaseException):
            raise self._call_error(tool, result)
        kept: dict[str, Any] = result
        return kept

    async def _call(self, session: Any, tool: str, arguments: dict[str, Any]) -> Any:
        import anyio

        try:
            with anyio.fail_after(self.spec.timeout):
                answer = await session.call_tool(tool, arguments)
        except TimeoutError:
            return None
        except Exception as exc:  # noqa: BLE001 - sorted out by _call_error, in the caller's thread
            return exc
        return compact_result(answer.model_dump(mode="json", by_alias=True, exclude_none=True))

    def _call_error(self, tool: str, exc: BaseException) -> Exception:
        from mcp.shared.exceptions import MCPError

        closed = -32000  # the SDK's CONNECTION_CLOSED
        if isinstance(exc, MCPError) and exc.code != closed and self.alive:
            return FunctionError(f"mcp server {self.spec.name!r} refused the call of {tool!r}: {exc.message}",
                                 f"the server refused the call: {exc.message}")
        return self._error(f"stopped answering during the call of {tool!r}: {_reason(exc)}")

    def _error(self, what: str) -> MCPServerError:
        spec = self.spec
        how = f"`{spec.describe()}`" if spec.command else spec.describe()
        lines = [f"mcp server {spec.name!r} ({how}) {what}"]
        tail = self._stderr.text(wait=1.0 if self._finished.is_set() else 0.0) if self._stderr else ""
        if tail:
            lines.append(f"  its last lines on stderr:")
            lines.extend(f"    {line}" for line in tail.splitlines())
        elif spec.command:
            lines.append("  it wrote nothing on stderr")
        lines.append("  hint: run the command by hand to see what it does" if spec.command
                     else "  hint: check that the server is up at that URL")
        return MCPServerError(redact("\n".join(lines)))


def _reason(exc: BaseException) -> str:
    """An SDK exception, briefly (exception groups opened up)."""
    while getattr(exc, "exceptions", None):  # an exception group (anyio's task groups raise them)
        exc = getattr(exc, "exceptions")[0]
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no answer in time"
    return text.splitlines()[0][:300]


async def _list_tools(session: Any) -> list[dict[str, Any]]:
    """Every tool the server lists (all pages, bounded), as JSON data."""
    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(_MAX_TOOL_PAGES):
        if cursor is None:
            page = await session.list_tools()
        else:
            from mcp_types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        for tool in page.tools:
            data = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
            tools.append({key: data[key] for key in ("name", "description", "inputSchema") if key in data})
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            break
    return tools


class _with_client:
    """An async context that closes the HTTP client after the transport it was given to."""

    def __init__(self, client: Any, inner: Any):
        self.client, self.inner = client, inner

    async def __aenter__(self) -> Any:
        await self.client.__aenter__()
        try:
            return await self.inner.__aenter__()
        except BaseException:
            await self.client.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.inner.__aexit__(*exc)
        finally:
            await self.client.__aexit__(None, None, None)
