"""Binding declared functions to Python, checking the model's arguments, and calling them.

Entry points are imported when the flow is loaded, so a wrong `module:function` or a signature that
cannot take the declared parameters is a validation error before any request is made.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ._durations import format_duration
from ._exceptions import FunctionError, RunError
from ._json import JSONError, dumps, loads
from ._record import CallRecord


class EntryPointError(Exception):
    """An entry point that cannot be imported or used; the loader turns it into a located Problem."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)


def resolve_entry(entry: str, flow_dir: Path) -> Callable[..., Any]:
    """Import `package.module:function`: the flow's own module from its folder, else an installed one.

    The flow's folder is appended to `sys.path`, never put ahead of it: a file beside the flow named
    like an installed module (`openai.py`, `json.py`) must not replace that module for everything
    in the process. A flow whose entry names such a file is refused, not silently given the
    installed module instead; the file beside the flow must be renamed.
    """
    module_name, sep, attr_path = entry.partition(":")
    if not sep or not module_name or not attr_path:
        raise EntryPointError(f"entry point {entry!r} is not of the form module:function",
                              "for example: weather_tools:get_current_weather")
    folder = flow_dir.resolve()
    _flow_folders.add(str(folder))
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # the module's own imports of its siblings work; installed modules win
    top = module_name.partition(".")[0]
    try:
        local = _local_source(folder, top)
        if local is not None:
            installed = _installed_elsewhere(top, local)
            if installed is not None:
                raise EntryPointError(f"{local.relative_to(folder).parts[0]} beside the flow has the name of an "
                                      f"installed module ({installed}), which it must not replace",
                                      f"rename it, e.g. to {top}_tools{'.py' if local.name != '__init__.py' else ''}, "
                                      f"and write entry: {top}_tools{module_name[len(top):]}:{attr_path}")
            _load_local(top, local)
        module = importlib.import_module(module_name)
    except EntryPointError:
        raise
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


_flow_folders: set[str] = set()
"""Folders of the flows loaded in this process: their modules are the flows', not installed ones."""


def _local_source(folder: Path, top: str) -> Path | None:
    """The file of module or package `top` in the flow's folder, if there is one."""
    for candidate in (folder / f"{top}.py", folder / top / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _installed_elsewhere(top: str, local: Path) -> str | None:
    """Where a module named `top` that is not a flow's own comes from (a path, or `built into Python`),
    when there is one other than `local`."""
    if top in sys.builtin_module_names:
        return "built into Python"
    cached = getattr(sys.modules.get(top), "__file__", None)
    if cached is not None and not _in_flow_folder(Path(cached).resolve()):
        return None if Path(cached).resolve() == local else str(cached)
    search = [entry for entry in sys.path if str(Path(entry or ".").resolve()) not in _flow_folders]
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(top, search) if finder is importlib.machinery.PathFinder else find_spec(top, None)
        except Exception:  # noqa: BLE001 - a third-party finder's trouble is not this flow's
            continue
        if spec is None or spec.origin in (None, "namespace"):  # a bare folder: never shadows anything
            continue
        origin = Path(spec.origin).resolve() if spec.has_location else None
        if origin is None:
            return str(spec.origin)  # built in, frozen
        if origin != local and not _in_flow_folder(origin):
            return str(spec.origin)
        return None
    return None


def _in_flow_folder(source: Path) -> bool:
    """Whether a module's file is a flow's own: `tools.py` or `tools/__init__.py` in a flow's folder (not
    anything below one: a flow in the home folder does not make the packages of a venv in it the flow's)."""
    folder = source.parent.parent if source.name == "__init__.py" else source.parent
    return str(folder) in _flow_folders


def _load_local(top: str, source: Path) -> None:
    """Import the flow's own module `top` from `source`, in place of another flow's module of that name:
    two flows in different folders may each have a `tools.py`, and Python caches modules by name."""
    cached = sys.modules.get(top)
    if cached is not None and getattr(cached, "__file__", None) and Path(str(cached.__file__)).resolve() == source:
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]
    package = [str(source.parent)] if source.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(top, source, submodule_search_locations=package)
    assert spec is not None and spec.loader is not None  # a .py file always has a spec and a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        raise


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


_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}
_MAX_VALIDATORS = 256


def _validator(parameters: dict[str, Any]) -> Any:
    """The validator of a function's `parameters`, made once per declaration (making one costs about as much
    as validating): kept with the declaration it belongs to, so an id is never reused while cached."""
    from ._schema import schema_validator

    cached = _VALIDATORS.get(id(parameters))
    if cached is not None and cached[0] is parameters:
        return cached[1]
    if len(_VALIDATORS) >= _MAX_VALIDATORS:
        _VALIDATORS.clear()
    validator = schema_validator(parameters)
    _VALIDATORS[id(parameters)] = (parameters, validator)
    return validator


def validate_arguments(arguments: dict[str, Any], parameters: dict[str, Any]) -> str | None:
    """The first reason `arguments` do not match the declared JSON Schema, or None."""
    from jsonschema.exceptions import best_match

    if "additionalProperties" not in parameters:
        # Only the arguments the declaration names reach the function (none, if it names none), unless its
        # `additionalProperties` says which others may: JSON Schema would let any through.
        declared = parameters.get("properties", {})
        extra = [name for name in arguments if name not in declared]
        if extra:
            allowed = ", ".join(declared) or "none"
            return f"unexpected argument {extra[0]!r} (the function takes: {allowed})"
    error = best_match(_validator(parameters).iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def refuse_call(call: Any, asked: int, cap: int) -> tuple[CallRecord, str, None]:
    """A call past a step's `max_calls`: recorded, not run, and answered so (every call needs an answer)."""
    arguments, _ = parse_arguments(call.arguments)
    reason = (f"not run: the response asked for {asked} function calls, more than the {cap} allowed at once "
              f"(max_calls)")
    record = CallRecord(id=call.id, name=call.name, arguments=arguments,
                        raw_arguments=call.arguments if arguments is None else None, error=reason)
    return record, f"Error: {reason}. Call again with at most {cap}, if still needed.", None


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
    except RunError:  # said by flowrunner itself (an MCP tool's call): already worded for the user
        raise
    except (Exception, SystemExit) as exc:  # a function calling sys.exit() must not end the whole run silently
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if len(frames) > 1 else ""
        raise FunctionError(f"function {name!r} raised {type(exc).__name__}: {exc}{where}",
                            f"the function raised {type(exc).__name__}: {exc}") from exc
