"""`flowrun init`: a starter flow with a function and a test case, ready to validate and record.

The starter is built so that the project's rule-based test server gives it a meaningful run (the
question shares the word "capital" with the function, and names the country after "of"), and so
that a real model passes the same test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ._exceptions import UsageError
from ._resources import schema_path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

FLOW_TEMPLATE = '''\
# yaml-language-server: $schema={schema}
name: {name}
description: A starter flow; the model may call a Python function. Edit freely.
model: gpt-4o-mini
inputs:
  question: {{type: string, default: "What is the capital of France?"}}
functions:
  get_capital:
    entry: {module}:get_capital      # module:function, importable from this folder
    description: Look up the capital city of a country
    parameters:
      type: object
      properties:
        country: {{type: string, description: "The country's name in English, e.g. France"}}
      required: [country]
steps:
  - id: answer
    messages:
      - {{role: system, content: You answer questions about countries; call get_capital for capitals.}}
      - {{role: user, content: "{{{{ inputs.question }}}}"}}
    functions: [get_capital]
    max_rounds: 4
outputs:
  answer: "{{{{ steps.answer.content }}}}"
tests:                                # `flowrun test {flow_file}`; cassettes/{name}/<test name>.yaml
  - name: france
    inputs: {{question: "What is the capital of France?"}}
    expect:
      calls: [{{name: get_capital, arguments: {{country: {{contains: France}}}}}}]
      outputs:
        answer: {{contains: Paris}}
'''

TOOLS_TEMPLATE = '''\
"""Functions for {name}.yaml: the model calls them with keyword arguments; return text or JSON-able data."""

from __future__ import annotations

CAPITALS = {{"france": "Paris", "germany": "Berlin", "japan": "Tokyo", "korea": "Seoul", "italy": "Rome"}}


def get_capital(country: str) -> dict[str, str]:
    """The capital of a country, from a small table (a real function might ask a database)."""
    return {{"country": country, "capital": CAPITALS.get(country.strip().lower(), "unknown")}}
'''


def starter_files(name: str, folder: Path, schema: str | None = None) -> dict[Path, str]:
    """The files `flowrun init NAME` writes, by path; refuses names that cannot be module names."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"cannot use {name!r} as a flow name: it also names the Python module {name}_tools\n"
                         "  hint: letters, digits and underscores, not starting with a digit, e.g. capitals")
    flow_file = folder / f"{name}.yaml"
    module = f"{name}_tools"
    ref = schema or schema_ref(folder)[0]
    return {
        flow_file: FLOW_TEMPLATE.format(schema=ref, name=name, module=module, flow_file=flow_file),
        folder / f"{module}.py": TOOLS_TEMPLATE.format(name=name),
    }


def write_starter(name: str, folder: Path, schema: str | None = None) -> list[Path]:
    """Write the starter files; nothing is written if any of them exists already."""
    files = starter_files(name, folder, schema)
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise UsageError(f"not overwriting {', '.join(existing)}\n"
                         "  hint: choose another name, or --dir for another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return list(files)


SCHEMA_FILE = "flow.schema.json"


def schema_ref(folder: Path) -> tuple[str, bool]:
    """What the starter's `$schema` comment points at, and whether that file is still to be made.

    A copy near the flow (`flow.schema.json` or `schemas/flow.schema.json` in the folder or one above)
    comes first; then a source checkout's own copy; never the copy inside an installed package, whose
    path (site-packages of one virtualenv and Python version) breaks when it is reinstalled: the
    comment then names `flow.schema.json` beside the flow, and `flowrun schema > ...` makes it."""
    here = folder.resolve()
    for place in (here, *here.parents):
        for candidate in (place / SCHEMA_FILE, place / "schemas" / SCHEMA_FILE):
            if candidate.is_file():
                return _relative(candidate, here), False
    installed = schema_path(SCHEMA_FILE)
    if not {"site-packages", "dist-packages"} & set(installed.parts):
        return _relative(installed, here), False
    return SCHEMA_FILE, True


def _relative(target: Path, here: Path) -> str:
    """`target` relative to `here` when they share more than the root, else absolute."""
    try:
        if Path(os.path.commonpath([target, here])) != Path(here.anchor):
            return Path(os.path.relpath(target, here)).as_posix()
    except ValueError:  # Windows: another drive
        pass
    return target.as_posix()
