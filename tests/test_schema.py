"""schemas/flow.schema.json: a valid schema that documents every key, and errors worded for humans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from flowrunner._schema import describe, request_option_names, schema_problems
from flowrunner._yaml import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "flow.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
FREE_FORM = {"parameters", "extra_body", "schema", "default"}
"""Properties whose value is arbitrary (a JSON Schema, server fields, an input's default)."""


def subschemas(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside the flow schema, with a JSON-pointer-ish path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    yield from subschemas(sub, f"{path}/{key}/{name}")
            elif key in ("items", "additionalProperties", "propertyNames"):
                yield from subschemas(value, f"{path}/{key}")
            elif key in ("anyOf", "oneOf", "allOf"):
                for index, sub in enumerate(value):
                    yield from subschemas(sub, f"{path}/{key}/{index}")


def problems(text: str) -> list[str]:
    data, positions = parse_yaml(text, "f.yaml")
    return [f"{p.location.line}:{p.location.column} {p.message}" for p in schema_problems(data, positions, "f.yaml")]


def test_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == "https://flowrunner.dev/schemas/flow.schema.json"
    assert SCHEMA["title"] and SCHEMA["description"]


def test_every_property_has_a_description() -> None:
    missing = [f"{path}/{name}" for path, node in subschemas(SCHEMA)
               for name, sub in node.get("properties", {}).items() if not sub.get("description")]
    assert missing == []


def test_every_fixed_shape_object_refuses_unknown_keys() -> None:
    for path, node in subschemas(SCHEMA):
        if node.get("type") == "object" and path.rsplit("/", 1)[-1] not in FREE_FORM:
            if "properties" in node:
                assert node.get("additionalProperties") is False, path
            else:  # a map from user names to values
                assert "propertyNames" in node or "additionalProperties" in node, path


def test_every_pattern_explains_itself() -> None:
    for path, node in subschemas(SCHEMA):
        if "pattern" in node and "logit_bias" not in path:
            assert node.get("patternErrorMessage"), path


def test_step_options_document_the_same_as_defaults() -> None:
    options = SCHEMA["$defs"]["requestOptions"]["properties"]
    step = SCHEMA["$defs"]["step"]["properties"]
    for name, option in options.items():
        assert step[name] == {"$ref": f"#/$defs/requestOptions/properties/{name}", "description": option["description"],
                              "markdownDescription": option["description"]}


def test_every_description_has_the_same_markdown_description_for_editors_hover() -> None:
    """yaml-language-server renders `markdownDescription` on hover (backticks as code), `description` as plain
    text: each description is given twice, identical. A new description needs its markdownDescription too."""
    found = [(path, node.get("description"), node.get("markdownDescription")) for path, node in subschemas(SCHEMA)
             if "description" in node or "markdownDescription" in node]
    assert len(found) > 100
    assert [(path, md) for path, text, md in found if md != text] == []


SCALAR_TYPES = {"string", "number", "integer", "boolean", "null"}


def test_no_value_chooses_among_scalar_types_by_one_of() -> None:
    """An editor shows only the first failing branch of a oneOf/anyOf: `timeout: 10 sec` would get `Incorrect
    type. Expected "number"` instead of the duration's pattern message. Several scalar types are one `type` list."""
    for path, node in subschemas(SCHEMA):
        for key in ("oneOf", "anyOf"):
            branches = node.get(key, [])
            types = [branch.get("type") for branch in branches]
            assert not (branches and all(t in SCALAR_TYPES for t in types)), f"{path}/{key}"


@pytest.mark.parametrize("text, message", [
    ("functions: {f: {entry: 'tools:f', timeout: 10 sec}}\n",
     "a duration is a number with a unit, like 250ms, 1.5s, 2m or 1h"),
    ("retry: {on: [timeot]}\n", "'timeot' is not one of ['timeout', 'connection']"),
    ("retry: {on: [200]}\n", "200 is less than the minimum of 400"),
])
def test_an_editor_sees_the_message_of_the_form_meant(text: str, message: str) -> None:
    """What an editor shows is jsonschema's best error of a plain validator: it must be the one that helps."""
    data, _ = parse_yaml(text + "steps: [{id: a, messages: [{role: user, content: hi}]}]\n", "f.yaml")
    error = best_match(Draft202012Validator(SCHEMA).iter_errors(data))
    shown = error.schema.get("patternErrorMessage") if error.validator == "pattern" else error.message
    assert shown == message


def test_request_options_are_the_documented_ones() -> None:
    assert set(request_option_names()) == {
        "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "user", "tool_choice", "parallel_tool_calls", "response_format",
        "reasoning_effort", "service_tier", "metadata", "store", "logprobs", "top_logprobs", "stream",
        "stream_options",
    }


@pytest.mark.parametrize("path", sorted((ROOT / "flows").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_flow_validates(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert list(Draft202012Validator(SCHEMA).iter_errors(yaml.safe_load(text))) == []
    data, positions = parse_yaml(text, str(path))
    assert schema_problems(data, positions, str(path)) == []


def test_a_full_flow_validates() -> None:
    assert problems("""
name: full.flow-1
description: d
model: m
api: functions
defaults: {temperature: 0.5, top_p: 1, max_tokens: 10, max_completion_tokens: 10, seed: -3, stop: x,
           presence_penalty: -2, frequency_penalty: 2, logit_bias: {50256: -100}, user: u,
           reasoning_effort: low, service_tier: flex, metadata: {k: v}, store: false, logprobs: true,
           top_logprobs: 20, stream: true, response_format: {type: json_object}}
inputs:
  q: {type: array, description: d, default: [], enum: [[], [1]]}
functions:
  get-weather_2: {entry: "pkg.mod:Class.method", description: d, parameters: {type: object}}
steps:
  - id: _s1
    description: d
    model: m
    messages:
      - {role: developer, content: c, name: n}
    functions: [get-weather_2]
    max_rounds: 100
    tool_choice: required
    parallel_tool_calls: true
    stop: [a, b, c, d]
    response_format: {type: json_schema, json_schema: {name: n, description: d, schema: {type: object}, strict: true}}
    extra_body: {top_k: 40, anything: [1, {x: y}]}
outputs:
  answer.text: "{{ steps._s1.content }}"
""") == []


def test_problems_are_sorted_by_place_in_the_file() -> None:
    assert problems("""
steps:
  - id: b
    messages: [{role: user, content: x}]
    temprature: 1
  - id: a
zzz: 1
""") == [
        "5:5 unknown key 'temprature' in steps[0]",
        "6:5 steps[1] is missing required key 'messages'",
        "7:1 unknown key 'zzz' at the top level",
    ]


def test_one_problem_per_unknown_key_each_at_its_key() -> None:
    assert problems("steps:\n  - {id: a, messages: [], foo: 1, bar: 2}\n") == [
        "2:23 steps[0].messages: expected at least 1 item, got none",
        "2:27 unknown key 'foo' in steps[0]",
        "2:35 unknown key 'bar' in steps[0]",
    ]


def test_required_keys_are_reported_at_the_parent_mapping() -> None:
    assert problems("steps:\n  - model: m\n") == [
        "2:5 steps[0] is missing required key 'id'",
        "2:5 steps[0] is missing required key 'messages'",
    ]


def test_duplicate_list_items_point_at_the_second() -> None:
    assert problems("steps:\n  - id: a\n    messages: [{role: user, content: x}]\n    functions: [f, g, f]\n") == [
        "4:23 steps[0].functions lists 'f' twice",
    ]


def test_invalid_map_names_point_at_the_key() -> None:
    assert problems("functions:\n  'get weather': {entry: 'a:b'}\nsteps: [{id: a, messages: [{role: user, content: x}]}]\n") == [
        "2:3 invalid name 'get weather' in functions",
    ]


@pytest.mark.parametrize("text, at", [
    ('name: "flow\\n"\n' + "steps:\n  - {id: a, messages: [{role: user, content: x}]}\n", "1:7"),
    ('steps:\n  - {id: "a\\n", messages: [{role: user, content: x}]}\n', "2:10"),
    ('inputs: {"q\\n": {type: string}}\nsteps:\n  - {id: a, messages: [{role: user, content: x}]}\n', "1:10"),
    ('functions: {f: {entry: "tools:f\\n"}}\nsteps:\n  - {id: a, messages: [{role: user, content: x}]}\n', "1:24"),
    ('steps:\n  - {id: a, messages: [{role: user, content: x}]}\ntests:\n  - {name: "boston\\n"}\n', "4:12"),
])
def test_a_name_with_a_trailing_newline_is_refused(text: str, at: str) -> None:
    """Python's `$` also matches before a final newline; the schema's patterns mean the end of the text."""
    (problem,) = problems(text)
    assert problem.startswith(f"{at} ") and "\\n'" in problem, problem


def test_named_tool_choice_form_is_explained() -> None:
    assert problems("steps: [{id: a, tool_choice: {type: function, function: {nam: f}},"
                    " messages: [{role: user, content: x}]}]\n") == [
        "1:57 steps[0].tool_choice.function is missing required key 'name'",
        "1:58 unknown key 'nam' in steps[0].tool_choice.function",
    ]


def test_tool_choice_mode_typo_is_explained() -> None:
    data, positions = parse_yaml("steps: [{id: a, tool_choice: autoo, messages: [{role: user, content: x}]}]\n", "f")
    (problem,) = schema_problems(data, positions, "f")
    assert problem.message == "steps[0].tool_choice: expected one of: auto, none, required; got 'autoo'"
    assert problem.hint == "did you mean 'auto'?"


@pytest.mark.parametrize(("value", "shown"), [
    ("five", "'five'"), (5, "5"), (2.5, "2.5"), (True, "true"), (None, "nothing (null)"),
    ({}, "a mapping"), ([], "a list"), ("x" * 100, repr("x" * 37 + "...")),
])
def test_describe(value: Any, shown: str) -> None:
    assert describe(value) == shown
