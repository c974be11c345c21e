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
    ref = schema or _schema_ref(folder)
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


def _schema_ref(folder: Path) -> str:
    """The installed schema: relative to the folder when they share more than the root (as flows/ does), else absolute."""
    target, here = schema_path("flow.schema.json"), folder.resolve()
    try:
        if Path(os.path.commonpath([target, here])) != Path(here.anchor):
            return Path(os.path.relpath(target, here)).as_posix()
    except ValueError:  # Windows: another drive
        pass
    return target.as_posix()
