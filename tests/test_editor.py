"""What an editor shows for flows: yaml-language-server (the server behind VS Code's YAML extension and
most editors' YAML support), pointed at schemas/flow.schema.json by each flow's modeline.

`.ci/run` installs yaml-language-server 1.25.0 from the npm registry and sets FLOWRUN_YAML_LANGUAGE_SERVER;
elsewhere these tests run when that variable (or `yaml-language-server` on PATH) names one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import FLOWS, ROOT

SERVER = os.environ.get("FLOWRUN_YAML_LANGUAGE_SERVER") or shutil.which("yaml-language-server")
pytestmark = pytest.mark.skipif(not SERVER, reason="yaml-language-server is not installed (.ci/run installs it)")

MODELINE = f"# yaml-language-server: $schema={ROOT / 'schemas' / 'flow.schema.json'}\n"


@pytest.fixture(scope="module")
def editor():
    from _lsp import LanguageServer

    server = LanguageServer([str(SERVER), "--stdio"])
    yield server
    server.close()


def test_no_shipped_flow_gets_a_false_alarm(editor):
    flows = sorted(FLOWS.glob("*.yaml"))
    assert flows
    assert {path.name: editor.diagnostics(path) for path in flows} == {path.name: [] for path in flows}


def test_a_value_failing_a_choice_of_scalar_types_gets_the_schemas_own_message_on_its_line(editor, tmp_path):
    flow = tmp_path / "mistakes.yaml"
    flow.write_text(MODELINE + "name: t\nmodel: gpt-4o-mini\nfunctions:\n  f:\n    entry: tools:f\n"
                    "    timeout: 10 sec\nsteps:\n  - id: a\n    retry: {on: [tmeout]}\n"
                    "    messages: [{role: user, content: hi}]\n")
    assert editor.diagnostics(flow) == [
        (7, "a duration is a number with a unit, like 250ms, 1.5s, 2m or 1h"),
        (10, 'Value is not accepted. Valid values: "timeout", "connection".'),
    ]  # not 'Incorrect type. Expected "number"' / '"integer"', the first branch's type


def test_hover_renders_the_descriptions_code_spans(editor):
    flow = FLOWS / "weather.yaml"
    editor.diagnostics(flow)  # opens it
    text = editor.hover(flow, 4, 1)  # `model:`
    assert "`gpt-4o-mini`" in text and "\\`" not in text
