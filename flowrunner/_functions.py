"""Binding declared functions to Python, checking the model's arguments, and calling them.

Entry points are imported when the flow is loaded, so a wrong `module:function` or a signature that
cannot take the declared parameters is a validation error before any request is made.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ._durations import format_duration
from ._exceptions import FunctionError
from ._json import JSONError, dumps, loads


class EntryPointError(Exception):
    """An entry point that cannot be imported or used; the loader turns it into a located Problem."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)


def resolve_entry(entry: str, flow_dir: Path) -> Callable[..., Any]:
    """Import `package.module:function`, with the flow's own folder importable."""
    module_name, sep, attr_path = entry.partition(":")
    if not sep or not module_name or not attr_path:
        raise EntryPointError(f"entry point {entry!r} is not of the form module:function",
                              "for example: weather_tools:get_current_weather")
    folder = str(flow_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    _forget_other_copy(module_name.partition(".")[0], flow_dir.resolve())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise EntryPointError(f"cannot import module {module_name!r} for entry point {entry!r}",
                                  f"put {module_name.replace('.', '/')}.py beside the flow file, "
                                  "or install the package that provides it") from None
        raise EntryPointError(f"importing {module_name!r} failed: {exc}") from None
    except (Exception, SystemExit) as exc:  # a module calling sys.exit() on import must not end flowrun silently
        raise EntryPointError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    target: object = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise EntryPointError(f"module {module_name!r} has no attribute {attr_path!r}",
                                  f"callables in {module_name}: {', '.join(public) or 'none'}")
        target = getattr(target, part)
    if not callable(target):
        raise EntryPointError(f"entry point {entry!r} is not callable")
    return target


def _forget_other_copy(top: str, folder: Path) -> None:
    """Two flows in different folders may each have a `tools.py`: Python caches modules by name, so
    drop a cached one that is not this flow's, and the import below finds the flow's own."""
    local = [folder / f"{top}.py", folder / top / "__init__.py"]
    cached = sys.modules.get(top)
    cached_file = getattr(cached, "__file__", None)
    if cached is None or cached_file is None or not any(p.is_file() for p in local):
        return
    if Path(cached_file).resolve() not in [p.resolve() for p in local]:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def check_signature(func: Callable[..., Any], parameters: dict[str, Any]) -> list[str]:
    """Reasons why `func(**arguments)` could fail for arguments that match `parameters`."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []  # builtins without a signature: trust the declaration
    props = parameters.get("properties", {}) if parameters.get("type", "object") == "object" else {}
    required = set(parameters.get("required", []))
    params = sig.parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    by_keyword = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    problems: list[str] = []
    for name in props:
        if name not in by_keyword and not takes_kwargs:
            problems.append(f"the function takes no parameter {name!r}, which the declaration allows")
    for name, p in params.items():
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            problems.append(f"parameter {name!r} is positional-only; arguments are passed by keyword")
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty:
            if name not in props:
                problems.append(f"parameter {name!r} has no default and is not declared in parameters.properties")
            elif name not in required:
                problems.append(f"parameter {name!r} has no default but is not in parameters.required")
    return problems


@dataclass
class Outcome:
    """What one function call produced: the text sent back to the model, and what went wrong if anything."""

    content: str
    result: Any = None
    error: str | None = None


def parse_arguments(raw: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The model's arguments string as a dict, or the reason it is not one."""
    if raw is None or raw.strip() == "":
        return {}, None
    try:
        value = loads(raw)
    except JSONError as exc:
        return None, f"arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def validate_arguments(arguments: dict[str, Any], parameters: dict[str, Any]) -> str | None:
    """The first reason `arguments` do not match the declared JSON Schema, or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if "additionalProperties" not in parameters and "properties" in parameters:
        # Only the arguments the declaration names reach the function, even if the schema forgot to say so.
        extra = [name for name in arguments if name not in parameters["properties"]]
        if extra:
            allowed = ", ".join(parameters["properties"]) or "none"
            return f"unexpected argument {extra[0]!r} (the function takes: {allowed})"
    error = best_match(Draft202012Validator(parameters).iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def to_content(result: Any) -> str:
    """A function's return value as the text of a tool message: strings as they are, else JSON."""
    if isinstance(result, str):
        return result
    return dumps(result)


def call_function(name: str, func: Callable[..., Any], arguments: dict[str, Any],
                  timeout: float | None = None) -> Any:
    """Call a flow's function; a raise (or passing `timeout` seconds) becomes a FunctionError.

    With a timeout the function runs in a daemon thread: Python cannot stop a thread, so one that
    hangs is abandoned, still running, and cannot keep the process from exiting.
    """
    if timeout is None:
        return _call(name, func, arguments)
    outcome: list[Any] = []
    failure: list[FunctionError] = []

    def target() -> None:
        try:
            outcome.append(_call(name, func, arguments))
        except FunctionError as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"flowrunner function {name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise FunctionError(f"function {name!r} did not finish within its timeout of {format_duration(timeout)}",
                            f"the function did not finish within {format_duration(timeout)}")
    if failure:
        raise failure[0]
    return outcome[0]


def _call(name: str, func: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    try:
        return func(**arguments)
    except (Exception, SystemExit) as exc:  # a function calling sys.exit() must not end the whole run silently
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if len(frames) > 1 else ""
        raise FunctionError(f"function {name!r} raised {type(exc).__name__}: {exc}{where}",
                            f"the function raised {type(exc).__name__}: {exc}") from exc
