"""Entry points, signatures, argument checks and calls."""

from __future__ import annotations

import pytest

from flowrunner import FunctionError
from flowrunner._functions import (EntryPointError, call_function, check_signature, parse_arguments, resolve_entry,
                                   validate_arguments)

PARAMS = {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
          "required": ["location"]}


def test_same_module_name_in_two_folders_gives_each_flow_its_own(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same_named_tools.py").write_text(f"def which():\n    return {name!r}\n")
    first = resolve_entry("same_named_tools:which", tmp_path / "a")
    second = resolve_entry("same_named_tools:which", tmp_path / "b")
    assert (first(), second()) == ("a", "b")


@pytest.mark.parametrize("entry, message", [
    ("no_colon", "not of the form module:function"),
    ("surely_missing_module_xyz:f", "cannot import module"),
    ("json:no_such_function", "has no attribute"),
    ("json:__doc__", "not callable"),
])
def test_bad_entry_points(entry, message, tmp_path):
    with pytest.raises(EntryPointError, match=message):
        resolve_entry(entry, tmp_path)


def ok(location, unit="celsius"): ...
def extra_required(location, unit, when): ...
def optional_but_required(location, unit): ...
def too_narrow(location): ...
def flexible(**kwargs): ...
def positional_only(location, /): ...


@pytest.mark.parametrize("func, problem", [
    (ok, None),
    (flexible, None),
    (extra_required, "'when' has no default and is not declared"),
    (optional_but_required, "'unit' has no default but is not in parameters.required"),
    (too_narrow, "takes no parameter 'unit'"),
    (positional_only, "positional-only"),
])
def test_signature_must_take_the_declared_arguments(func, problem):
    problems = check_signature(func, PARAMS)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("raw, expected", [("", {}), (None, {}), ('{"a": 1}', {"a": 1})])
def test_parse_arguments(raw, expected):
    assert parse_arguments(raw) == (expected, None)


def test_a_raising_function_is_a_function_error_naming_it():
    def explode(location):
        raise ValueError("no such place")

    with pytest.raises(FunctionError, match=r"function 'explode' raised ValueError: no such place at .*test_functions.py:\d+"):
        call_function("explode", explode, {"location": "x"})


def test_a_function_calling_sys_exit_is_a_function_error_not_an_exit():
    import sys

    def quits(location):
        sys.exit(3)

    with pytest.raises(FunctionError, match="'quits' raised SystemExit: 3"):
        call_function("quits", quits, {"location": "x"})


@pytest.mark.parametrize("body, message", [
    ("import sys\nsys.exit(3)\n", r"importing 'exits_on_import' failed: SystemExit: 3"),
    ("raise RuntimeError('no config')\n", r"importing 'exits_on_import' failed: RuntimeError: no config"),
])
def test_a_module_that_exits_or_raises_on_import_is_a_located_problem(body, message, tmp_path):
    (tmp_path / "exits_on_import.py").write_text(body)
    with pytest.raises(EntryPointError, match=message):
        resolve_entry("exits_on_import:f", tmp_path)


@pytest.mark.parametrize("parameters, problem", [
    ({"type": "object"}, "unexpected argument 'admin' (the function takes: none)"),  # built without the loader
    ({"type": "object", "properties": {}}, "unexpected argument 'admin' (the function takes: none)"),
    ({"type": "object", "properties": {"path": {"type": "string"}}}, "unexpected argument 'admin' (the function takes: path)"),
    ({"type": "object", "additionalProperties": True}, None),  # open, and saying so
])
def test_only_declared_arguments_pass_unless_the_schema_says_any_may(parameters, problem):
    assert validate_arguments({"admin": True, "path": "/etc/shadow"}, parameters) == problem
