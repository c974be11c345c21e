"""Validation against OpenAI's own Files and Batch schemas (`schemas/openai/batch-files.openapi.json`).

The test server checks `POST /v1/batches` bodies against `CreateBatchRequest` with the same
OpenAI-worded messages as chat requests (`_spec`), and its tests check every `Batch` and
`OpenAIFile` object it sends against the spec with `object_errors`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from flowrunner._resources import load_json
from flowrunner.testing._spec import SpecError, _explain, _shallow_first

_SPEC_FILE = "openai/batch-files.openapi.json"
_URI = "urn:flowrunner:openai:batch-files"


@lru_cache(maxsize=None)
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for `components.schemas[schema_name]`, built once per process."""
    registry: Registry = Registry().with_resource(_URI, DRAFT202012.create_resource(load_json(_SPEC_FILE)))
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{schema_name}"}, registry=registry)


def problems(schema_name: str, document: Any) -> list[SpecError]:
    """Everything wrong with `document` under `schema_name`, most relevant first."""
    errors = sorted(validator(schema_name).iter_errors(document), key=_shallow_first)
    return list(dict.fromkeys(_explain(error) for error in errors))


def object_errors(schema_name: str, document: Any) -> list[str]:
    """Messages for everything wrong with an object the server sends (`Batch`, `OpenAIFile`, ...).

    The spec declares none of the Batch's timestamps and file ids nullable, yet its own examples,
    like the real API, send null for those not set yet (`"output_file_id": null`): a null member
    is read as absent, which the spec allows for every member it does not require.
    """
    return [p.message for p in problems(schema_name, _without_nulls(document))]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
