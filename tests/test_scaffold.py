"""`flowrun init` (a starter flow that validates and whose test records and replays) and `flowrun schema`."""

from __future__ import annotations

import json

import pytest

from flowrunner._cli import main
from flowrunner._flowtest import run_case
from flowrunner._loader import load_flow

from conftest import ROOT


def test_init_writes_a_valid_flow_with_a_test(tmp_path, capsys):
    assert main(["init", "capitals", "--dir", str(tmp_path / "flows")]) == 0
    out = capsys.readouterr().out
    flow_file = tmp_path / "flows" / "capitals.yaml"
    assert f"wrote {flow_file} and {tmp_path / 'flows' / 'capitals_tools.py'}" in out
    assert f"flowrun test {flow_file} --record --base-url URL" in out
    first = flow_file.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert first.endswith("schemas/flow.schema.json")
    assert main(["validate", str(flow_file)]) == 0
    assert "ok (1 step, 1 function)" in capsys.readouterr().out
    flow = load_flow(flow_file)
    assert [case.name for case in flow.tests] == ["france"]


def test_init_refuses_to_overwrite(tmp_path, capsys):
    assert main(["init", "capitals", "--dir", str(tmp_path)]) == 0
    (tmp_path / "capitals_tools.py").write_text("# mine\n")
    assert main(["init", "capitals", "--dir", str(tmp_path)]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (tmp_path / "capitals_tools.py").read_text() == "# mine\n"


@pytest.mark.parametrize("name", ["my-flow", "1st", "a b", "capitals\n"])
def test_init_wants_a_module_friendly_name(tmp_path, capsys, name):
    assert main(["init", name, "--dir", str(tmp_path)]) == 2
    assert "letters, digits and underscores" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.server
def test_init_test_case_records_and_replays(tmp_path, chat_server, capsys):
    # A name of its own: the flow's functions module is imported into this test session.
    assert main(["init", "starter_rr", "--dir", str(tmp_path)]) == 0
    flow = load_flow(tmp_path / "starter_rr.yaml")
    recorded = run_case(flow, flow.tests[0], record_mode="all", base_url=chat_server.base_url)
    assert recorded.passed, recorded.report()
    assert recorded.record is not None and "Paris" in recorded.record.outputs["answer"]
    assert run_case(flow, flow.tests[0]).passed


def test_schema_prints_the_shipped_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((ROOT / "schemas" / "flow.schema.json").read_text())
    assert "tests" in printed["properties"]
    assert main(["schema", "--path"]) == 0
    assert capsys.readouterr().out.strip().endswith("flow.schema.json")


def test_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("test", "init", "schema"):
        assert f"    {command} " in out


def test_init_points_at_a_schema_near_the_flow_never_into_an_installed_package(tmp_path, capsys, monkeypatch):
    import flowrunner._scaffold as scaffold

    # Installed as a wheel: the package's copy sits in a virtualenv's site-packages.
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "flowrunner" / "schemas"
    installed.mkdir(parents=True)
    (installed / "flow.schema.json").write_text("{}")
    monkeypatch.setattr(scaffold, "schema_path", lambda name: installed / name)

    project = tmp_path / "project"
    assert main(["init", "alone", "--dir", str(project / "flows")]) == 0
    out = capsys.readouterr().out
    first = (project / "flows" / "alone.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=flow.schema.json"
    assert f"flowrun schema > {project / 'flows' / 'flow.schema.json'}" in out and "site-packages" not in out

    # A copy in the project (here: schemas/ one folder up, as in this repository) is found by walking up.
    (project / "schemas").mkdir()
    (project / "schemas" / "flow.schema.json").write_text("{}")
    assert main(["init", "near", "--dir", str(project / "flows" / "more")]) == 0
    out = capsys.readouterr().out
    first = (project / "flows" / "more" / "near.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../schemas/flow.schema.json"
    assert "flowrun schema >" not in out
