"""A flow's inputs: parsing `-i NAME=VALUE`, applying defaults, checking values against declarations."""

from __future__ import annotations

import difflib
import json
import os
from typing import Any, Iterable, Mapping

from ._exceptions import InputError
from ._model import MISSING, Flow, InputSpec
from ._secrets import register, register_env_value


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """`["question=Hi", ...]` as a dict; the text after the first `=` is the value, as typed."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"input {pair!r} is not of the form NAME=VALUE")
        values[name.strip()] = value
    return values


def _from_text(spec: InputSpec, text: str) -> Any:
    """Command-line text as the declared type: strings stay as typed, anything else is read as JSON."""
    kind = spec.schema.get("type", "string")
    if kind == "string":
        return text
    if kind == "boolean" and text.lower() in ("true", "yes", "1", "false", "no", "0"):
        return text.lower() in ("true", "yes", "1")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"input {spec.name!r} expects {kind}, and {text!r} is not one "
                         f"(write it as JSON, e.g. {_example(kind)})") from None


def _example(kind: str) -> str:
    return {"integer": "3", "number": "2.5", "boolean": "true", "object": '{"a": 1}', "array": '["a", "b"]'}.get(kind, "")


def resolve_inputs(flow: Flow, given: Mapping[str, Any], *, from_text: bool = False) -> dict[str, Any]:
    """Every declared input's value: given, else from its `env` variable, else its default.

    Unknown names and bad values are errors. A value read from the environment becomes a secret.
    """
    from jsonschema import Draft202012Validator

    unknown = [name for name in given if name not in flow.inputs]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(flow.inputs), n=1)
        known = ", ".join(flow.inputs) or "none"
        raise InputError(f"flow {flow.name!r} has no input {name!r}"
                         + (f"; did you mean {close[0]!r}?" if close else f" (its inputs: {known})"))
    values: dict[str, Any] = {}
    for name, spec in flow.inputs.items():
        if name in given:
            value = given[name]
            if from_text and isinstance(value, str):
                value = _from_text(spec, value)
        elif spec.env is not None and os.environ.get(spec.env) is not None:
            text = os.environ[spec.env]
            try:
                value = _from_text(spec, text)
            except InputError:
                register(text, spec.env)  # the refusal quotes it
                raise
            register_env_value(name, text, value, spec.env)
        elif spec.default is not MISSING:
            value = spec.default
        else:
            where = f"set the environment variable {spec.env}, or " if spec.env else ""
            raise InputError(f"flow {flow.name!r} needs input {name!r}: {where}pass it with -i {name}=VALUE")
        if value is None and spec.default is None:  # `default: null`: optional, with no value
            values[name] = None
            continue
        error = next(iter(Draft202012Validator(spec.schema).iter_errors(value)), None)
        if error is not None:
            raise InputError(f"input {name!r}: {error.message}")
        values[name] = value
    return values
