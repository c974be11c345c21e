"""A flow's inputs: parsing `-i NAME=VALUE`, applying defaults, checking values against declarations."""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any, BinaryIO, Iterable, Mapping

from ._exceptions import InputError
from ._json import JSONError, loads
from ._model import MISSING, Flow, InputSpec
from ._secrets import redact, register, register_env_value


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """`["question=Hi", ...]` as a dict; the text after the first `=` is the value, as typed."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"input {pair!r} is not of the form NAME=VALUE")
        values[name.strip()] = value
    return values


MAX_INPUT_BYTES = 10 * 1024 * 1024
"""The most an input read from a file or stdin (`-i NAME=@FILE`, `--inputs FILE.json`) may hold: 10 MB."""


def read_assignments(pairs: Iterable[str], stdin: BinaryIO | None = None) -> dict[str, str]:
    """`-i NAME=VALUE` values, where `@FILE` is the file's text, `@-` stdin's, and `@@...` a value starting with @."""
    values = parse_assignments(pairs)
    stdin_used = None
    for name, value in values.items():
        if value.startswith("@@"):
            values[name] = value[1:]
        elif value == "@-":
            if stdin_used is not None:
                raise InputError(f"inputs {stdin_used!r} and {name!r} both read stdin (@-); it can be read once")
            stdin_used = name
            values[name] = _decoded(_read_bounded(stdin or sys.stdin.buffer, "stdin"), "stdin", name)
        elif value.startswith("@"):
            values[name] = _decoded(read_file(value[1:], f"input {name!r}", at_hint=value), value[1:], name)
    return values


def read_inputs_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`--inputs FILE.json`: one JSON object of input values."""
    raw = read_file(path, "--inputs")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"--inputs {path}: not UTF-8 text") from None
    try:
        values = loads(text)  # bounded: the file is the user's, but may come from anywhere
    except JSONError as exc:
        line, column = text.count("\n", 0, exc.pos or 0) + 1, (exc.pos or 0) - text.rfind("\n", 0, exc.pos or 0)
        where = "" if exc.pos is None else f" at line {line}, column {column}"
        raise InputError(f"--inputs {path}: not JSON ({exc.msg}{where})\n"
                         '  hint: write one JSON object of the inputs, e.g. {"question": "Hi", "count": 3}') from None
    if not isinstance(values, dict):
        raise InputError(f"--inputs {path}: expected a JSON object of the inputs, got a {type(values).__name__}\n"
                         '  hint: e.g. {"question": "Hi"}; for many runs, use flowrun batch with a .jsonl file')
    return values


def read_file(path: str | os.PathLike[str], what: str, at_hint: str | None = None) -> bytes:
    """A file's bytes for an input, at most MAX_INPUT_BYTES; an InputError says why not."""
    name = os.fspath(path)
    escape = f" (for a value that starts with @, write @{at_hint})" if at_hint else ""
    try:
        with open(name, "rb") as file:
            return _read_bounded(file, name)
    except FileNotFoundError:
        raise InputError(f"{what}: file not found: {name}{escape}") from None
    except IsADirectoryError:
        raise InputError(f"{what}: {name} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{what}: cannot read {name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot read {name}: {exc.strerror or exc}") from None


def _read_bounded(stream: BinaryIO, name: str) -> bytes:
    raw = stream.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"{name} holds more than {MAX_INPUT_BYTES // 1024 // 1024} MB, the limit for an input "
                         "read from a file or stdin\n  hint: give the flow a shorter text, or a path that one of "
                         "its functions reads")
    return raw


def _decoded(raw: bytes, name: str, input_name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {input_name!r}: {name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                         f"offset {exc.start})") from None


def _from_text(spec: InputSpec, text: str) -> Any:
    """Command-line text as the declared type: strings stay as typed, anything else is read as JSON."""
    kind = spec.schema.get("type", "string")
    if kind == "string":
        return text
    if kind == "boolean" and text.lower() in ("true", "yes", "1", "false", "no", "0"):
        return text.lower() in ("true", "yes", "1")
    try:
        return loads(text)
    except JSONError as exc:
        raise InputError(f"input {spec.name!r} expects {kind}, and {_quote(text)} is not one "
                         f"({exc.msg}; write it as JSON, e.g. {_example(kind)})") from None


def _quote(text: str, limit: int = 40) -> str:
    """The text as an error message quotes it: whole if short, else its start and its length."""
    text = redact(text)  # before clipping, which could leave a secret's start unredacted
    return repr(text) if len(text) <= limit else f"{text[:limit] + '...'!r} ({len(text):,} characters)"


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
                register(text, spec.env)  # a value that is no secret's shape is still one when refused:
                value = _from_text(spec, text)  # the refusal again, quoting it redacted (this raises)
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
