"""Where the JSON schemas shipped with flowrunner are, installed or in a source checkout."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# A wheel carries `schemas/` inside the package; an editable install reads the repository's copy.
_CANDIDATES = (_HERE / "schemas", _HERE.parent / "schemas")


def schema_path(name: str) -> Path:
    """Path of a file under `schemas/` (e.g. `flow.schema.json`)."""
    for folder in _CANDIDATES:
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"flowrunner is missing its schema file {name!r}; reinstall flowrunner")


@lru_cache(maxsize=None)
def load_json(name: str) -> Any:
    """A schema file, parsed once per process."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))
