"""Checking a parsed flow against schemas/flow.schema.json, in words a flow's author can act on.

jsonschema's messages describe the schema ("Additional properties are not allowed", "is not valid
under any of the given schemas"); these describe the file: which key, where, and what was expected.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any, Iterable, Iterator, cast

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from ._exceptions import Location, Problem
from ._resources import load_json
from ._yaml import JsonPath, Positions, format_path, where

_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s+(?=[A-Z`])")
_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "object": "a mapping", "array": "a list", "null": "null",
}


@lru_cache(maxsize=1)
def flow_schema() -> dict[str, Any]:
    """The flow schema as shipped (parsed once)."""
    schema: dict[str, Any] = load_json("flow.schema.json")
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return schema_validator(flow_schema())


def schema_validator(schema: Any) -> Draft202012Validator:
    """A draft 2020-12 validator for `schema` whose `pattern` means what JSON Schema says (see `_pattern`):
    for the flow schema, and for every schema in a flow (function parameters, response formats, matchers)."""
    return cast(Draft202012Validator, _validator_class()(schema))


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    return validators.extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`pattern` as JSON Schema (ECMA-262) means it: a final `$` is the end of the text. jsonschema runs
    Python's `re.search`, whose `$` also matches before a final newline, so `name: "boston\\n"` passed."""
    if isinstance(instance, str) and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=256)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern with each `$` that is an anchor (not escaped, not in a [class]) as Python's `\\Z`."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = "\\Z"
        out.append(char)
        index += 1
    return re.compile("".join(out))


def request_option_names() -> tuple[str, ...]:
    """Keys of a step (and of `defaults`) that are passed through to the API, from the schema."""
    return tuple(flow_schema()["$defs"]["requestOptions"]["properties"])


def schema_problems(data: Any, positions: Positions, filename: str) -> list[Problem]:
    """Every way `data` breaks the flow schema, located and sorted by place in the file."""
    problems: list[Problem] = []
    errors = list(_validator().iter_errors(data))
    # A value of the wrong type is that one problem: `1.5` under `type: [integer, string], minimum: 400`
    # is not also "less than 400".
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        if error.validator == "type" or tuple(error.absolute_path) not in mistyped:
            problems.extend(error_problems(error, positions))
    return sort_problems(problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in file order, each once (several schema errors can say the same thing)."""
    def key(p: Problem) -> tuple[int, int, str]:
        loc = p.location
        return (loc.line, loc.column, p.message) if loc else (0, 0, p.message)

    return sorted(dict.fromkeys(problems), key=key)


def error_problems(error: ValidationError, positions: Positions, prefix: JsonPath = ()) -> list[Problem]:
    """Explain one jsonschema error; `prefix` is where the validated value sits in the document."""
    return list(_explain(error, positions, prefix))


def describe(value: Any) -> str:
    """A value as a message shows it: `'five'`, `3`, `a list`, `nothing (null)`."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int) and abs(value) >= 10**40:
        return f"a number of {len(str(abs(value))):,} digits"
    return repr(value)


def _explain(error: ValidationError, positions: Positions, prefix: JsonPath) -> Iterator[Problem]:
    path: JsonPath = prefix + tuple(error.absolute_path)
    name = format_path(path)
    value_at = positions.value(path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    # Set on every error a validator yields; the stubs also allow jsonschema's Unset sentinel.
    instance: Any = error.instance
    validator_value: Any = error.validator_value
    empty_hint = "the value is empty: write it after the colon, or indented on the lines below" \
        if instance is None else None

    if kind in ("anyOf", "oneOf") and error.context:
        yield from _alternatives(error, positions, prefix)
    elif kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for extra in sorted(k for k in instance if k not in allowed):
            yield Problem(positions.key(path + (extra,)), f"unknown key {extra!r} {where(path)}",
                          positions.comma_split(path + (extra,)) or _unknown_key_hint(extra, allowed, path))
    elif kind == "required" and isinstance(instance, dict):
        for missing in validator_value:
            if missing not in instance:
                owner = format_path(path) if path else "the flow"
                about = _first_sentence(schema.get("properties", {}).get(missing, {}).get("description"))
                yield Problem(value_at, f"{owner} is missing required key {missing!r}",
                              f"{missing}: {about}" if about else None)
    elif kind == "type":
        # A value of several allowed types (a duration: number or string) is explained by its description.
        about = _first_sentence(schema.get("description")) if isinstance(validator_value, list) else None
        yield Problem(value_at, f"{name}: expected {_expected_types(validator_value)}, got {describe(instance)}",
                      empty_hint or about)
    elif kind == "enum":
        choices = ", ".join(str(c) for c in validator_value)
        yield Problem(value_at, f"{name}: expected one of: {choices}; got {describe(instance)}",
                      _did_you_mean(instance, validator_value) or empty_hint)
    elif kind == "const":
        yield Problem(value_at, f"{name}: expected {validator_value!r}, got {describe(instance)}")
    elif kind == "pattern" and "propertyNames" in error.absolute_schema_path:
        yield Problem(positions.key(path + (instance,)), f"invalid name {instance!r} {where(path)}",
                      schema.get("patternErrorMessage"))
    elif kind == "pattern":
        yield Problem(value_at, f"{name}: invalid value {describe(instance)}",
                      schema.get("patternErrorMessage") or f"it must match the pattern {validator_value}")
    elif kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "more than",
                 "maximum": "at most", "exclusiveMaximum": "less than"}[kind]
        yield Problem(value_at, f"{name}: expected {bound} {validator_value}, got {describe(instance)}")
    elif kind in ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"):
        yield _size_problem(kind, validator_value, instance, name, value_at)
    elif kind == "uniqueItems" and isinstance(instance, list):
        seen: list[Any] = []
        for index, item in enumerate(instance):
            if item in seen:
                yield Problem(positions.value(path + (index,)), f"{name} lists {describe(item)} twice",
                              "remove the second one")
            else:
                seen.append(item)
    else:
        yield Problem(value_at, f"{name}: {error.message}")


def _alternatives(error: ValidationError, positions: Positions, prefix: JsonPath) -> Iterator[Problem]:
    """A value matching none of several forms: explain the form the author evidently meant.

    A form whose type differs from the value's, or whose `const` discriminator (`type: json_schema`)
    fails, is not the one meant; if exactly one form is left, its errors are the real ones.
    """
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def ruled_out(errors: list[ValidationError]) -> bool:
        return any((e.validator == "type" and not e.relative_path) or e.validator == "const" for e in errors)

    meant = [errors for errors in branches.values() if not ruled_out(errors)]
    if len(meant) == 1:
        for sub in meant[0]:
            yield from _explain(sub, positions, prefix)
        return
    if meant:
        yield from _explain(best_match(e for errors in meant for e in errors), positions, prefix)
        return
    consts = [e for errors in branches.values() for e in errors if e.validator == "const"]
    if consts and len(consts) == len(branches) and len({tuple(e.absolute_path) for e in consts}) == 1:
        path = prefix + tuple(consts[0].absolute_path)
        choices = ", ".join(str(e.validator_value) for e in consts)
        got = describe(consts[0].instance)
        yield Problem(positions.value(path), f"{format_path(path)}: expected one of: {choices}; got {got}",
                      _did_you_mean(consts[0].instance, [e.validator_value for e in consts]))
        return
    path = prefix + tuple(error.absolute_path)
    forms: list[str] = []
    for errors in branches.values():
        for e in errors:
            if e.validator == "type" and not e.relative_path:
                forms.append(_expected_types(cast("str | list[str]", e.validator_value)))  # never Unset here
    forms = list(dict.fromkeys(forms)) or ["one of the allowed forms"]
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = " or ".join(forms)
    yield Problem(positions.value(path), f"{format_path(path)}: expected {expected}, got {describe(error.instance)}",
                  _first_sentence(schema.get("description")))


def _size_problem(kind: str, limit: int, instance: Any, name: str, where_: Location) -> Problem:
    if kind == "minLength" and limit == 1:
        return Problem(where_, f"{name}: must not be empty")
    unit = {"minItems": "item", "maxItems": "item", "minProperties": "key", "maxProperties": "key",
            "minLength": "character", "maxLength": "character"}[kind]
    bound = "at least" if kind.startswith("min") else "at most"
    size = len(instance) if isinstance(instance, (list, dict, str)) else 0
    got = "none" if size == 0 else str(size)
    return Problem(where_, f"{name}: expected {bound} {limit} {unit}{'s' if limit != 1 else ''}, got {got}")


def _expected_types(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in names)


def _unknown_key_hint(extra: str, allowed: list[str], path: JsonPath) -> str:
    if not path and extra in request_option_names():
        return f"a request option for every step goes under `defaults:` (or set it on a step: {extra}: ...)"
    close = difflib.get_close_matches(extra, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"


def _did_you_mean(value: Any, choices: Iterable[Any]) -> str | None:
    if not isinstance(value, str):
        return None
    close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _first_sentence(text: str | None) -> str | None:
    if not text:
        return None
    head = _SENTENCE_END.split(text, maxsplit=1)[0]
    return head if head.endswith(".") or head == text else head + "."
