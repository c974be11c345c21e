"""Shrink OpenAI's chat-completions OpenAPI YAML into the JSON file flowrunner validates against.

Usage: python schemas/openai/strip_spec.py SOURCE.yaml OUTPUT.json

Documentation (descriptions, titles, summaries, examples, vendor `x-*` extensions) is removed so the
file stays small; everything that constrains a value is kept, and so is every `$ref` target.
OpenAPI 3.0's `nullable: true`, which the 3.1 document still uses in places, means nothing to a JSON
Schema 2020-12 validator, so it is rewritten into the 3.1 spelling (a `"null"` type) instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

# Maps whose keys are names chosen by the spec's authors (a property may well be called
# `description` or `title`), so their keys are never treated as keywords.
NAME_MAPS = {"properties", "patternProperties", "$defs", "schemas", "paths", "content", "responses",
             "headers", "securitySchemes"}
# Keywords whose values are data, not schemas: copied verbatim.
DATA_KEYS = {"default", "enum", "const", "required"}
DOC_STRINGS = {"description", "title", "summary"}
DOC_ANY = {"example", "examples", "externalDocs"}


def is_doc(key: str, value: Any) -> bool:
    """True for documentation-only keywords."""
    return key.startswith("x-") or key in DOC_ANY or (key in DOC_STRINGS and isinstance(value, str))


def nullable_to_31(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite OpenAPI 3.0 `nullable: true` as JSON Schema: a null type, or an anyOf with null."""
    if schema.pop("nullable", False) is not True:
        return schema
    if isinstance(schema.get("type"), str) and not {"$ref", "oneOf", "anyOf", "allOf"} & schema.keys():
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def clean(node: Any, key: str = "") -> Any:
    """`node` without documentation; `key` is the key it sits under in its parent."""
    if isinstance(node, list):
        return [clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    if key in NAME_MAPS:
        return {name: clean(child, key + "/*") for name, child in node.items()}
    # OpenAPI requires a description on every Response Object: keep those few short ones.
    keep = {"description"} if key == "responses/*" else set()
    out = {k: v if k in DATA_KEYS else clean(v, k)
           for k, v in node.items() if k in keep or not is_doc(k, v)}
    return nullable_to_31(out)


def strip(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole document, cleaned; `info` keeps only what OpenAPI requires plus the licence."""
    out = {k: clean(v, k) for k, v in spec.items() if k != "info"}
    info = spec["info"]
    return {"openapi": spec["openapi"],
            "info": {k: info[k] for k in ("title", "version", "license") if k in info}, **out}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, output = map(Path, argv)
    spec = yaml.safe_load(source.read_text(encoding="utf-8"))
    text = json.dumps(strip(spec), indent=1, ensure_ascii=False)
    output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
