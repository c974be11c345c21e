"""Structured output: a step with a `response_format` must answer with JSON, matching its schema if it
has one. The check is ours, whatever the server promises: an answer that does not match is sent
back with the problem (up to the step's `repair` times) and otherwise fails the run, never passing
silently to the steps after it.
"""

from __future__ import annotations

import re
from typing import Any

from ._json import JSONError, loads

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def unfence(content: str) -> str:
    """The text inside a ```json fence, which models often add; the text itself otherwise."""
    fenced = _FENCE.match(content)
    return fenced.group(1) if fenced else content


def expected_schema(response_format: Any) -> tuple[bool, dict[str, Any] | None]:
    """Whether the format asks for JSON at all, and the JSON Schema the answer must match if any."""
    if not isinstance(response_format, dict):
        return False, None
    if response_format.get("type") == "json_object":
        return True, None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return True, schema if isinstance(schema, dict) else None
    return False, None


def output_problem(content: str, response_format: Any) -> str | None:
    """Why `content` is not the structured answer the format asks for, or None when it is."""
    wants_json, schema = expected_schema(response_format)
    if not wants_json:
        return None
    try:
        value = loads(unfence(content))
    except JSONError as exc:
        return f"the answer is not valid JSON ({exc.msg}; it starts {content[:60]!r})"
    if schema is None:
        return None if isinstance(value, dict) else f"the answer is JSON but not an object ({type(value).__name__})"
    from jsonschema.exceptions import best_match

    from ._schema import schema_validator

    error = best_match(schema_validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"the answer does not match the schema: {where + ': ' if where else ''}{error.message}"


def repair_message(problem: str) -> dict[str, Any]:
    """What the model is told after an answer that does not match: the problem, and what to send."""
    return {"role": "user", "content": f"Your answer was rejected: {problem}. Reply again with only the "
                                       "corrected JSON, matching the required format exactly."}
