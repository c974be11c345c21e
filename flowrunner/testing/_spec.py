"""Validation against OpenAI's own Chat Completions schemas, so the test server is exactly as strict.

The schemas come from `schemas/openai/chat-completions.openapi.json` (OpenAPI 3.1, whose schemas
are JSON Schema 2020-12). The document is registered as one `referencing` resource, so every
`$ref: '#/components/schemas/X'` inside it resolves. Messages are worded like the real API's
("Missing required parameter: 'messages'.") because users see them in flowrunner's errors.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, NamedTuple, cast

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import relevance
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from flowrunner._resources import load_json

_SPEC_FILE = "openai/chat-completions.openapi.json"
_URI = "urn:flowrunner:openai:chat-completions"
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


class SpecError(NamedTuple):
    """One thing wrong with a document: an OpenAI-style message and the parameter it is about."""

    message: str
    param: str | None


@lru_cache(maxsize=None)
def _registry() -> Registry:
    # Typed here: referencing's `with_resource` has no return annotation.
    registry: Registry = Registry().with_resource(_URI, DRAFT202012.create_resource(load_json(_SPEC_FILE)))
    return registry


@lru_cache(maxsize=None)
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for `components.schemas[schema_name]`, built once per process."""
    ref = {"$ref": f"{_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(ref, registry=_registry())


@lru_cache(maxsize=None)
def request_parameters() -> frozenset[str]:
    """Every top-level parameter `CreateChatCompletionRequest` declares (through allOf and $ref)."""
    schemas = load_json(_SPEC_FILE)["components"]["schemas"]

    def names(schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            return names(schemas[schema["$ref"].rsplit("/", 1)[1]])
        found = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            found |= names(part)
        return found

    return frozenset(names(schemas["CreateChatCompletionRequest"]))


def problems(schema_name: str, document: Any) -> list[SpecError]:
    """Everything wrong with `document` under `schema_name`, most relevant first."""
    shape = _shape(schema_name, document)
    if shape is not None and shape in _VALID_SHAPES:
        return []
    errors = sorted(validator(schema_name).iter_errors(document), key=_shallow_first)
    # allOf branches can report the same fault twice (e.g. a body that is not an object)
    found = list(dict.fromkeys(_explain(error) for error in errors))
    if not found and shape is not None:
        if len(_VALID_SHAPES) >= _MAX_SHAPES:
            _VALID_SHAPES.clear()
        _VALID_SHAPES.add(shape)
    return found


# Validating one chat request or answer takes about a millisecond, which a batch of 10,000 lines
# pays ten thousand times. Documents differing only in values no schema here constrains (the text
# of `content`, ids, tool-call arguments, token counts, timestamps: each a plain string or integer
# wherever the chat spec declares it; tests/test_testserver_batches.py checks this) are equally
# valid, so a valid document's shape, with those values blanked, stands for the next ones.
_FREE_STRINGS = frozenset({"content", "id", "arguments", "tool_call_id", "refusal", "system_fingerprint"})
_FREE_INTEGERS = frozenset({"created", "prompt_tokens", "completion_tokens", "total_tokens"})
_MAX_SHAPES = 4096
_VALID_SHAPES: set[str] = set()


def _blank(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "" if k in _FREE_STRINGS and isinstance(v, str)
                else 0 if k in _FREE_INTEGERS and type(v) is int else _blank(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(item) for item in value]
    return value


def _shape(schema_name: str, document: Any) -> str | None:
    """`document` with its free values blanked, as canonical JSON; None if it cannot be written."""
    try:
        return schema_name + json.dumps(_blank(document), allow_nan=False)  # key order: a miss at worst
    except (ValueError, TypeError, RecursionError):
        return None


def request_problems(body: Any) -> list[SpecError]:
    """Problems with a request body; like the real API, unknown top-level parameters are errors."""
    found = problems("CreateChatCompletionRequest", body)
    if isinstance(body, dict):
        found += [SpecError(f"Unrecognized request argument supplied: {name}", None)
                  for name in body if name not in request_parameters()]
    return found


def request_errors(body: Any) -> list[str]:
    """Messages for everything wrong with a `CreateChatCompletionRequest` body (empty if valid)."""
    return [p.message for p in request_problems(body)]


def response_errors(body: Any) -> list[str]:
    """Messages for everything wrong with a `chat.completion` object."""
    return [p.message for p in problems("CreateChatCompletionResponse", body)]


def chunk_errors(chunk: Any) -> list[str]:
    """Messages for everything wrong with one `chat.completion.chunk` object."""
    return [p.message for p in problems("CreateChatCompletionStreamResponse", chunk)]


def error_errors(body: Any) -> list[str]:
    """Messages for everything wrong with an `{"error": {...}}` body."""
    return [p.message for p in problems("ErrorResponse", body)]


def _shallow_first(error: ValidationError) -> tuple[int, str]:
    return len(error.absolute_path), error.json_path


def _param(path: Any) -> str | None:
    """`messages[0].role` style, as the real API writes `param`; None for the document itself."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or None


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _quote_list(values: list[Any]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _explain(error: ValidationError) -> SpecError:
    """Word the most useful error under `error` (descending through oneOf/anyOf) like OpenAI does."""
    while error.context:
        chosen = _descend(error)
        if isinstance(chosen, SpecError):
            return chosen
        error = chosen
    param = _param(error.absolute_path)
    where = f"'{param}'" if param else "the request body"
    # Set on every error a validator yields; the stubs also allow jsonschema's Unset sentinel.
    instance: Any = error.instance
    validator_value: Any = error.validator_value
    if error.validator == "required":
        missing = next(n for n in validator_value if n not in instance)
        return SpecError(f"Missing required parameter: '{_param([*error.absolute_path, missing])}'.",
                       _param([*error.absolute_path, missing]))
    if error.validator == "type":
        expected = validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return SpecError(f"Invalid type for {where}: expected {expected}, but got "
                       f"{_json_type(instance)} instead.", param)
    if error.validator == "enum":
        return SpecError(f"Invalid value for {where}: {instance!r}. Supported values are: "
                       f"{_quote_list(validator_value)}.", param)
    return SpecError(f"Invalid value for {where}: {error.message}.", param)


def _descend(error: ValidationError) -> ValidationError | SpecError:
    """Pick the oneOf/anyOf branch the sender meant, or word why none could be meant.

    A branch is "not meant" when the value has the wrong JSON type for it, or when a property
    that tells branches apart (a single-value enum such as `role: user`) differs: that is how the
    spec's discriminators (`role`, `type`) work.
    """
    depth = len(error.absolute_path)
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    tag_errors: list[ValidationError] = []
    type_errors: list[ValidationError] = []
    meant: list[ValidationError] = []
    for errors in branches.values():
        # An enum error's validator_value is the list of allowed values (the stubs also allow Unset).
        tags = [e for e in errors if e.validator == "enum" and len(cast(list[Any], e.validator_value)) == 1
                and len(e.absolute_path) == depth + 1]
        types = [e for e in errors if e.validator == "type" and len(e.absolute_path) == depth]
        tag_errors += tags
        type_errors += types
        if not tags and not types:
            meant += errors
    if meant:
        return max(meant, key=relevance)
    if tag_errors:
        first = tag_errors[0]
        param = _param(first.absolute_path)
        allowed = [cast(list[Any], e.validator_value)[0]
                   for e in tag_errors if e.absolute_path == first.absolute_path]
        return SpecError(f"Invalid value for '{param}': {first.instance!r}. Supported values are: "
                       f"{_quote_list(allowed)}.", param)
    if type_errors:
        expected: list[Any] = [t for e in type_errors for t in (e.validator_value if isinstance(
            e.validator_value, list) else [e.validator_value])]
        where = f"'{_param(error.absolute_path)}'" if error.absolute_path else "the request body"
        return SpecError(f"Invalid type for {where}: expected {' or '.join(dict.fromkeys(expected))}, "
                       f"but got {_json_type(error.instance)} instead.", _param(error.absolute_path))
    return max(error.context, key=relevance)
