"""The pytest plugin, run in temporary projects: the fixture, --record-mode, flows' tests as items."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

# The in-process runs below drop, after each run, the modules first imported during it; PyYAML's C
# parser would then hold classes of a dropped copy. Imported here, they stay the same throughout.
import flowrunner._engine  # noqa: F401
import flowrunner._flowtest  # noqa: F401
import openai  # noqa: F401
import vcr  # noqa: F401
import yaml  # noqa: F401

from conftest import FLOWS

WEATHER_TESTS = """\
tests:
  - name: boston
    inputs: {question: "What's the weather in Boston?"}
    expect:
      calls: [{name: get_current_weather, arguments: {location: {contains: Boston}}}]
      outputs: {answer: {contains: "72"}}
"""

TEST_MODULE = """\
def test_weather(flowrun):
    record = flowrun("flows/weather.yaml", {"question": "What's the weather in Boston?"})
    assert "72" in record.outputs["answer"]
    assert record.steps[0].rounds[0].calls[0].arguments == {"location": "Boston"}
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with flows/weather.yaml (plus a test case) and its functions; no key, no base URL."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    flows = pytester.path / "flows"
    flows.mkdir()
    text = (FLOWS / "weather.yaml").read_text().split("\ntests:")[0] + "\n" + WEATHER_TESTS
    (flows / "weather.yaml").write_text(text)
    # A module name of its own: the in-process runs share sys.modules with this test session.
    tools = f"tools_{pytester.path.name}"
    shutil.copy(FLOWS / "weather_tools.py", flows / f"{tools}.py")
    (flows / "weather.yaml").write_text(text.replace("weather_tools:", f"{tools}:"))
    (flows / "settings.yaml").write_text("key: value\ntests: not a flow\n")
    return pytester


@pytest.mark.server
def test_fixture_records_then_replays(project, chat_server):
    project.makepyfile(test_mod=TEST_MODULE)
    recorded = project.runpytest("--record-mode", "once", "--flowrun-base-url", chat_server.base_url,
                                 "test_mod.py")
    recorded.assert_outcomes(passed=1)
    cassette = project.path / "cassettes" / "test_mod" / "test_weather.yaml"
    assert cassette.is_file()
    sent = len(chat_server.requests)
    replayed = project.runpytest("test_mod.py")  # default --record-mode none
    replayed.assert_outcomes(passed=1)
    assert len(chat_server.requests) == sent == 2


def test_fixture_without_cassette_fails_readably(project):
    project.makepyfile(test_mod=TEST_MODULE)
    result = project.runpytest("test_mod.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no cassette at *cassettes/test_mod/test_weather.yaml to replay (--record-mode none)*",
                                 "*hint: record it against a server: pytest --record-mode once*"])
    assert "_engine.py" not in result.stdout.str()


@pytest.mark.server
def test_flow_tests_are_collected_recorded_and_replayed(project, chat_server):
    recorded = project.runpytest("flows", "--record-mode", "all", "--flowrun-base-url", chat_server.base_url, "-v")
    recorded.assert_outcomes(passed=1)  # settings.yaml is no flow: not collected
    recorded.stdout.fnmatch_lines(["flows/weather.yaml::boston PASSED*"])
    assert (project.path / "flows" / "cassettes" / "weather" / "boston.yaml").is_file()
    project.runpytest("flows").assert_outcomes(passed=1)
    # The cassettes folder holds YAML too, and must never be collected.
    assert "cassettes" not in project.runpytest("flows", "--collect-only", "-q").stdout.str()


@pytest.mark.server
def test_failing_expectation_and_cassette_miss_read_well(project, chat_server):
    project.runpytest("flows", "--record-mode", "all", "--flowrun-base-url", chat_server.base_url) \
        .assert_outcomes(passed=1)
    flow = project.path / "flows" / "weather.yaml"
    flow.write_text(flow.read_text().replace('{contains: "72"}', '{contains: "73"}')
                    + """\
  - name: paris
    inputs: {question: "What's the weather in Paris?"}
""")
    result = project.runpytest("flows")
    result.assert_outcomes(passed=0, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*_ boston _*",
        "*flows/weather.yaml:*: outputs.answer: expected to contain '73', got 'get_current_weather: location Boston*",
        "*_ paris _*",
        "*no cassette at *cassettes/weather/paris.yaml to replay*",
    ])
    assert "Traceback" not in out and "_flowtest.py" not in out
    # Now the input changes under a recorded cassette: the miss shows the diff.
    flow.write_text(flow.read_text().replace('question: "What\'s the weather in Boston?"}',
                                             'question: "What\'s the weather in Oslo?"}'))
    result = project.runpytest("flows", "-k", "boston")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the request is not in cassette *boston.yaml (record mode 'none')",
                                 "*diff of the bodies (- recorded, + this run):",
                                 "*-      \"content\": \"What's the weather in Boston?\",",
                                 "*+      \"content\": \"What's the weather in Oslo?\","])


def test_invalid_flow_is_a_readable_collection_error(project):
    (project.path / "flows" / "bad.yaml").write_text("model: m\nsteps: [{id: a, messages: [{role: user, content: hi}]}]\n"
                                                     "tests: [{name: x, expect: {outputs: {nope: 1}}}]\n")
    result = project.runpytest("flows/bad.yaml")
    result.stdout.fnmatch_lines(["*invalid flow:*", "*bad.yaml:3:*: error: unknown output 'nope'*"])
    assert "Traceback" not in result.stdout.str()


def test_collection_can_be_turned_off(project):
    project.makeini("[pytest]\nflowrunner_collect = false\n")
    result = project.runpytest("flows", "--collect-only", "-q")
    assert "weather.yaml" not in result.stdout.str()


def test_plugin_import_is_cheap():
    code = ("import sys, flowrunner.pytest_plugin; "
            "print(sorted(m for m in ('openai', 'vcr', 'jsonschema', 'jinja2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


TWO_CITIES = """\
def test_weather(flowrun):
    boston = flowrun("flows/weather.yaml", {"question": "What's the weather in Boston?"})
    assert "72" in boston.outputs["answer"]
    paris = flowrun("flows/weather.yaml", {"question": "What's the weather in Paris?"})
    assert paris.steps[0].rounds[0].calls[0].arguments["location"] == "Paris"
"""


@pytest.mark.server
def test_new_episodes_replays_what_the_cassette_has_and_records_what_it_lacks(project, chat_server):
    project.makepyfile(test_mod=TEST_MODULE)
    project.runpytest("--record-mode", "once", "--flowrun-base-url", chat_server.base_url, "test_mod.py") \
        .assert_outcomes(passed=1)
    cassette = project.path / "cassettes" / "test_mod" / "test_weather.yaml"
    old = yaml.safe_load(cassette.read_text())["interactions"]
    boston_requests = len(chat_server.requests)
    assert len(old) == boston_requests >= 2 and "Paris" not in cassette.read_text()

    project.makepyfile(test_mod=TWO_CITIES)  # the same test now also asks for Paris: not in the cassette
    project.runpytest("test_mod.py").assert_outcomes(failed=1)  # replay only: the Paris request is missing
    result = project.runpytest("--record-mode", "new_episodes", "--flowrun-base-url", chat_server.base_url,
                               "test_mod.py")
    result.assert_outcomes(passed=1)
    new_requests = chat_server.requests[boston_requests:]
    assert new_requests and all("Paris" in json.dumps(r.body) for r in new_requests)  # Boston was replayed
    interactions = yaml.safe_load(cassette.read_text())["interactions"]
    assert interactions[:len(old)] == old  # the old recording is kept as it was
    assert len(interactions) == len(old) + len(new_requests)
    assert all("Paris" in json.dumps(i["request"]) for i in interactions[len(old):])

    sent = len(chat_server.requests)
    project.runpytest("test_mod.py").assert_outcomes(passed=1)  # now both replay with no server
    assert len(chat_server.requests) == sent


@pytest.mark.server
def test_a_malformed_cassette_fails_the_case_and_the_fixture_naming_the_interaction(project, chat_server):
    project.makepyfile(test_mod=TEST_MODULE)
    project.runpytest("flows", "test_mod.py", "--record-mode", "all", "--flowrun-base-url", chat_server.base_url) \
        .assert_outcomes(passed=2)
    for cassette in (project.path / "flows" / "cassettes" / "weather" / "boston.yaml",
                     project.path / "cassettes" / "test_mod" / "test_weather.yaml"):
        data = yaml.safe_load(cassette.read_text())  # damaged as a hand edit or a bad merge would leave it
        data["interactions"][0]["response"]["status"] = "OK"
        cassette.write_text(yaml.safe_dump(data))
    result = project.runpytest("flows", "test_mod.py")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*boston.yaml is not a readable cassette: interaction 1 of 2 "
                                 "(POST /v1/chat/completions): response.status: expected a mapping such as "
                                 "{code: 200, message: OK}, got 'OK'"], consecutive=False)
    result.stdout.fnmatch_lines(["*test_weather.yaml is not a readable cassette: interaction 1 of 2 *"])
    assert "Traceback" not in result.stdout.str() and "KeyError" not in result.stdout.str()


@pytest.mark.server
def test_a_cassette_miss_is_said_once_at_the_tests_line_with_the_plugins_options(project, chat_server):
    project.makepyfile(test_mod=TEST_MODULE)
    project.runpytest("--record-mode", "once", "--flowrun-base-url", chat_server.base_url, "test_mod.py") \
        .assert_outcomes(passed=1)
    project.makepyfile(test_mod=TEST_MODULE.replace("in Boston?", "in Oslo?"))
    result = project.runpytest("test_mod.py")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([">*record = flowrun(\"flows/weather.yaml\"*", "E*Failed: flow 'weather' failed*",
                                 "*hint:*pytest --record-mode new_episodes*--flowrun-base-url URL*",
                                 "test_mod.py:2: Failed"])
    # Once in the failure's report (pytest's own summary line repeats it in full when CI is set).
    assert out.split("short test summary info")[0].count("the request is not in cassette") == 1
    assert "During handling" not in out and "--base-url" not in out.replace("--flowrun-base-url", "")
    assert "pytest_plugin.py" not in out and "_engine.py" not in out

    # A flow's own case: its re-record command is pytest's too.
    project.runpytest("flows", "--record-mode", "all", "--flowrun-base-url", chat_server.base_url) \
        .assert_outcomes(passed=1)
    flow = project.path / "flows" / "weather.yaml"
    flow.write_text(flow.read_text().replace("in Boston?\"}", "in Oslo?\"}"))
    result = project.runpytest("flows")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*hint: the flow or this case changed since recording; re-record it: pytest "
                                 "*flows/weather.yaml::boston --record-mode all --flowrun-base-url URL*"])
    assert "--base-url" not in result.stdout.str().replace("--flowrun-base-url", "")


def test_an_empty_cassette_is_said_to_be_empty_with_pytests_options(project):
    project.makepyfile(test_mod=TEST_MODULE)
    cassette = project.path / "cassettes" / "test_mod" / "test_weather.yaml"
    cassette.parent.mkdir(parents=True)
    cassette.write_text("")  # no recording in it (touched, or cut short)
    result = project.runpytest("test_mod.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*the cassette is empty: it holds no recording at all",
                                 "E*hint: record it: pytest --record-mode all against a server: --flowrun-base-url*"])
