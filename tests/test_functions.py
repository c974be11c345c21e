"""Entry points, signatures, argument checks and calls."""

from __future__ import annotations

import json

import pytest

from flowrunner import FunctionError
from flowrunner._functions import (EntryPointError, call_function, check_signature, parse_arguments, resolve_entry,
                                   validate_arguments)

from test_json import DEEP, LONG_INT, tool_call

PARAMS = {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
          "required": ["location"]}


def test_same_module_name_in_two_folders_gives_each_flow_its_own(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same_named_tools.py").write_text(f"def which():\n    return {name!r}\n")
    first = resolve_entry("same_named_tools:which", tmp_path / "a")
    second = resolve_entry("same_named_tools:which", tmp_path / "b")
    again = resolve_entry("same_named_tools:which", tmp_path / "a")  # the first folder, loaded once more
    assert (first(), second(), again()) == ("a", "b", "a")


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


def test_a_flows_module_imports_its_siblings(tmp_path):
    (tmp_path / "sibling_helper_x.py").write_text("VALUE = 'helped'\n")
    (tmp_path / "uses_sibling_x.py").write_text("import sibling_helper_x\n\ndef f():\n    return sibling_helper_x.VALUE\n")
    assert resolve_entry("uses_sibling_x:f", tmp_path)() == "helped"


# -- a module beside the flow named like an installed one: it must neither shadow it nor be skipped ----

SHADOW = """\
model: gpt-4o-mini
functions:
  where:
    entry: {entry}
    parameters: {{type: object, properties: {{}}}}
steps:
  - id: a
    messages: [{{role: user, content: hi}}]
    functions: [where]
"""


def flowrun(*args, cwd):
    import subprocess
    import sys

    from conftest import clean_env

    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.server
def test_an_openai_py_beside_the_flow_does_not_replace_the_sdk(tmp_path, chat_server):
    (tmp_path / "openai.py").write_text("raise ImportError('the openai.py beside the flow was imported')\n")
    (tmp_path / "where_tools.py").write_text("import json\n\ndef where():\n    return json.__file__\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text(SHADOW.format(entry="where_tools:where"))
    from test_faults import completion

    chat_server.enqueue(completion(calls=[("where", {})]), completion("Done."))
    done = flowrun("run", str(flow), "--base-url", chat_server.base_url, cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Done.\n"


@pytest.mark.parametrize("name", ["json", "openai"])
def test_a_flow_naming_a_module_that_has_an_installed_ones_name_is_a_located_problem(name, tmp_path):
    (tmp_path / f"{name}.py").write_text("def where():\n    return 'beside the flow'\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text(SHADOW.format(entry=f"{name}:where"))
    done = flowrun("validate", str(flow), cwd=tmp_path.parent)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{flow}:4:12: error: {name}.py beside the flow has the name of an installed module (" in done.stderr
    assert f"hint: rename it, e.g. to {name}_tools.py, and write entry: {name}_tools:where" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_package_beside_the_flow_is_the_flows_own_in_each_folder(tmp_path):
    for name in ("a", "b"):
        package = tmp_path / name / "same_named_pkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "mod.py").write_text(f"from . import helper\n\ndef which():\n    return helper.NAME\n")
        (package / "helper.py").write_text(f"NAME = {name!r}\n")
    first = resolve_entry("same_named_pkg.mod:which", tmp_path / "a")
    second = resolve_entry("same_named_pkg.mod:which", tmp_path / "b")
    assert (first(), second()) == ("a", "b")


def test_a_pattern_ending_in_dollar_does_not_let_a_trailing_newline_through():
    parameters = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[0-9]+$"}}}
    assert validate_arguments({"code": "12"}, parameters) is None
    assert validate_arguments({"code": "12\n"}, parameters) == "code: '12\\n' does not match '^[0-9]+$'"


@pytest.mark.parametrize("raw, reason", [
    ('{"x": ' + DEEP + "}", "nested deeper than 100 levels"),
    ('{"x": ' + LONG_INT + "}", "a number of 5,000 digits"),
    ('{"x": NaN}', "NaN is not a JSON number"),
], ids=["deep", "long-int", "nan"])
def test_arguments_json_cannot_hold_are_invalid_arguments(raw, reason):
    arguments, problem = parse_arguments(raw)
    assert arguments is None and problem.startswith(f"arguments are not valid JSON ({reason}")


LOOKUP = """
    model: m
    functions:
      lookup:
        entry: tools:lookup
        description: Look a word up
        parameters: {type: object, properties: {x: {}}}
        on_invalid_arguments: %s
    steps:
      - id: answer
        functions: [lookup]
        messages: [{role: user, content: "Say hi"}]
"""
LOOKUP_TOOLS = """
    def lookup(x=None):
        return "found"
"""


@pytest.mark.server
@pytest.mark.parametrize("arguments", ['{"x": ' + DEEP + "}", '{"x": ' + LONG_INT + "}"], ids=["deep", "long-int"])
def test_arguments_json_cannot_hold_go_back_to_the_model_or_fail_as_the_function_says(make_flow, chat_server,
                                                                                       arguments):
    from flowrunner import Engine, OpenAITransport

    chat_server.enqueue(tool_call(arguments))
    with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
        record = Engine(transport).run(make_flow(LOOKUP % "reply", tools=LOOKUP_TOOLS))
        assert record.status == "succeeded", record.error
        call = record.steps[0].rounds[0].calls[0]
        assert call.arguments is None and call.raw_arguments == arguments
        assert call.error.startswith("invalid arguments for lookup: arguments are not valid JSON (")
        sent_back = chat_server.requests[1].body["messages"][-1]
        assert sent_back["role"] == "tool" and "arguments are not valid JSON" in sent_back["content"]

        chat_server.enqueue(tool_call(arguments))
        record = Engine(transport).run(make_flow(LOOKUP % "fail", tools=LOOKUP_TOOLS))
    assert record.status == "failed" and record.error["type"] == "FunctionError"
    assert "arguments are not valid JSON" in record.error["message"]


@pytest.mark.server
def test_a_function_result_json_cannot_hold_is_sent_and_recorded_cut_short(make_flow, chat_server):
    from flowrunner import Engine, OpenAITransport

    tools = """
        def lookup(x=None):
            deep = []
            for _ in range(5000):
                deep = [deep]
            selfish = {"name": "loop"}
            selfish["me"] = selfish
            return {"deep": deep, "selfish": selfish, (1, 2): "tuple key"}
    """
    chat_server.enqueue(tool_call('{"x": 1}'))
    with OpenAITransport(base_url=chat_server.base_url, api_key="test") as transport:
        record = Engine(transport).run(make_flow(LOOKUP % "reply", tools=tools))
    assert record.status == "succeeded", record.error
    result = record.steps[0].rounds[0].calls[0].result
    assert result["selfish"] == {"name": "loop", "me": "(cut: a value that holds itself)"}
    assert result["(1, 2)"] == "tuple key"
    assert "(cut: nested deeper than 200 levels)" in json.dumps(result)
    assert json.loads(chat_server.requests[1].body["messages"][-1]["content"]) == result


def test_a_functions_argument_validator_is_made_once_not_per_call(monkeypatch):
    import flowrunner._schema as schema_module

    made = []
    real = schema_module.schema_validator
    monkeypatch.setattr(schema_module, "schema_validator", lambda schema: made.append(schema) or real(schema))
    parameters = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    assert validate_arguments({"location": "Paris"}, parameters) is None
    assert validate_arguments({"location": 3}, parameters) == "location: 3 is not of type 'string'"
    assert made == [parameters]
    other = {"type": "object", "properties": {"location": {"type": "integer"}}}
    assert validate_arguments({"location": 3}, other) is None  # another declaration, its own validator
    assert made == [parameters, other]
