"""Running a flow's test cases under their cassettes, and `flowrun test` as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowrunner import ConfigError, FlowValidationError, load_flow
from flowrunner._flowtest import cassette_for, find_flows, run_case, selected
from flowrunner._inputs import resolve_inputs
from flowrunner._pricing import Price
from flowrunner._record import without_timing

from conftest import FLOWS, ROOT, clean_env

CASES = """\
tests:
  - name: boston
    inputs: {question: "What's the weather in Boston?"}
    expect:
      calls: [{name: get_current_weather, arguments: {location: Boston}}]
      outputs: {answer: {contains: "72"}}
"""


@pytest.fixture
def weather(tmp_path: Path) -> Path:
    """A copy of the weather flow, without its tests, in a fresh folder; tests are appended per test."""
    folder = tmp_path / "project"
    folder.mkdir()
    text = (FLOWS / "weather.yaml").read_text().split("\ntests:")[0] + "\n"
    (folder / "weather.yaml").write_text(text)
    shutil.copy(FLOWS / "weather_tools.py", folder / "weather_tools.py")
    return folder / "weather.yaml"


def with_tests(path: Path, tests: str) -> Path:
    path.write_text(path.read_text() + tests)
    return path


@pytest.mark.server
def test_record_then_replay(weather, chat_server):
    flow = load_flow(with_tests(weather, CASES))
    (case,) = flow.tests
    recorded = run_case(flow, case, record_mode="all", base_url=chat_server.base_url)
    assert recorded.passed, recorded.report()
    assert recorded.cassette == weather.parent / "cassettes" / "weather" / "boston.yaml"
    assert recorded.cassette.is_file()
    sent = len(chat_server.requests)
    replayed = run_case(flow, case)  # record mode none, no server address: the cassette or nothing
    assert replayed.passed, replayed.report()
    assert len(chat_server.requests) == sent
    assert replayed.record is not None and recorded.record is not None
    assert without_timing(replayed.record.to_dict()) == without_timing(recorded.record.to_dict())


BOUNDS = """\
tests:
  - name: {name}
    inputs: {{question: "What's the weather in Boston?"}}
    expect: {expect}
"""


@pytest.mark.server
def test_cost_latency_and_token_bounds_pass_and_fail_saying_what_was_measured(weather, chat_server):
    cases = "".join(BOUNDS.format(name=name, expect=expect).removeprefix("tests:\n") for name, expect in [
        ("within", "{cost: {max: 0.01}, latency: {max: 1m}, tokens: {min: 10, max: 100000}}"),
        ("dear", "{cost: {max: 0.0000001}}"),
        ("cheap", "{cost: {min: 1}}"),
        ("slow", "{latency: {min: 1h}}"),
        ("big", "{tokens: {max: 5}}"),
    ])
    flow = load_flow(with_tests(weather, "tests:\n" + cases))
    results = {case.name: run_case(flow, case, record_mode="all", base_url=chat_server.base_url)
               for case in flow.tests}
    assert results["within"].passed, results["within"].report()
    record = results["within"].record
    assert record is not None and record.cost is not None and record.duration is not None
    usage = record.usage

    assert not results["dear"].passed
    assert f"cost: expected at most $0.0000001, got ${record.cost:.10f}".rstrip("0") in results["dear"].report()
    assert "cost: expected at least $1, got $" in results["cheap"].report()
    assert "latency: expected at least 1h, got " in results["slow"].report()
    assert "(the run's duration)" in results["slow"].report()
    assert (f"tokens: expected at most 5, got {usage['total_tokens']} ({usage['prompt_tokens']} prompt, "
            f"{usage['completion_tokens']} completion)") in results["big"].report()
    assert f"{weather}:" in results["big"].report()  # located at the expectation

    replayed = run_case(flow, flow.tests[0])  # replayed: priced and timed the same way
    assert replayed.passed, replayed.report()


@pytest.mark.server
def test_a_cost_bound_on_a_model_without_price_fails_saying_how_to_price_it(weather, chat_server):
    text = weather.read_text().replace("model: gpt-4o-mini", "model: my-local-llama")
    weather.write_text(text)
    flow = load_flow(with_tests(weather, BOUNDS.format(name="priced", expect="{cost: {max: 1}}")))
    result = run_case(flow, flow.tests[0], record_mode="all", base_url=chat_server.base_url)
    assert not result.passed
    assert "cost: the run's cost is unknown: no price for model 'my-local-llama'" in result.report()
    assert "hint: set one in the flow (prices:" in result.report()
    priced = run_case(flow, flow.tests[0], prices={"my-local-llama": Price(input=1.0, output=1.0)})
    assert priced.passed, priced.report()


def test_missing_cassette_says_how_to_record(weather):
    flow = load_flow(with_tests(weather, CASES))
    result = run_case(flow, flow.tests[0])
    assert not result.passed
    assert f"no cassette at {cassette_for(flow, flow.tests[0])} to replay" in result.report()
    assert f"flowrun test {weather} -k boston --record --base-url URL" in result.report()


def test_recording_needs_a_server(weather):
    flow = load_flow(with_tests(weather, CASES))
    with pytest.raises(ConfigError, match="recording needs a server"):
        run_case(flow, flow.tests[0], record_mode="all")


@pytest.mark.server
def test_cassette_miss_shows_a_diff_against_the_closest_recording(weather, chat_server):
    flow = load_flow(with_tests(weather, CASES))
    assert run_case(flow, flow.tests[0], record_mode="all", base_url=chat_server.base_url).passed
    weather.write_text(weather.read_text().replace('inputs: {question: "What\'s the weather in Boston?"}',
                                                   'inputs: {question: "What\'s the weather in Paris?"}'))
    changed = load_flow(weather)
    result = run_case(changed, changed.tests[0])
    report = result.report()
    assert "the request is not in cassette" in report
    assert ("closest recording (request 1 of 2) differs in the body: body.messages[1].content: "
            "recorded \"What's the weather in Boston?\", now \"What's the weather in Paris?\"") in report
    assert "    -      \"content\": \"What's the weather in Boston?\"," in report
    assert "    +      \"content\": \"What's the weather in Paris?\"," in report
    assert "re-record it: flowrun test" in report and "--record-mode new_episodes" not in report


def test_shipped_flows_pass_their_tests():
    results = [run_case(flow, case) for path in find_flows([FLOWS]) for flow in [load_flow(path)]
               for case in flow.tests]
    assert len(results) >= 7
    assert [r.id for r in results if not r.passed] == []


def test_find_flows_skips_cassettes_hidden_folders_and_other_yaml(tmp_path):
    (tmp_path / "cassettes" / "x").mkdir(parents=True)
    (tmp_path / "cassettes" / "x" / "a.yaml").write_text("steps: []\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "b.yaml").write_text("steps: []\n")
    (tmp_path / "config.yaml").write_text("key: value\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "flow.yml").write_text("steps: [\n")  # broken, but a flow: reported, not skipped
    (tmp_path / "top.yaml").write_text("model: m\nsteps: []\n")
    assert find_flows([tmp_path]) == [tmp_path / "sub" / "flow.yml", tmp_path / "top.yaml"]
    with pytest.raises(FlowValidationError, match="no such file or folder"):
        find_flows([tmp_path / "nope"])


def test_keyword_selects_by_flow_stem_and_case_name():
    flow = load_flow(FLOWS / "weather.yaml")
    assert [c.name for c in selected(flow, "BOSTON")] == ["boston"]
    assert len(selected(flow, "weather::")) == len(flow.tests)
    assert selected(flow, "hello") == []


# -- the command ---------------------------------------------------------------------------------


def flowrun(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], text=True, capture_output=True,
                          cwd=cwd, env=env, timeout=120)


def test_cli_runs_every_shipped_flows_tests():
    done = flowrun("test", "flows/")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flows/weather.yaml::boston PASSED" in done.stdout
    assert "flows/cassettes" not in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("=") and " 9 passed, 0 failed in " in done.stdout


def test_cli_keyword_and_json():
    done = flowrun("test", "flows/", "-k", "two_cities", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] == 1 and report["failed"] == 0
    assert report["cases"][0]["id"] == "flows/weather.yaml::two_cities"


@pytest.mark.server
def test_cli_failure_exit_1_with_located_message(weather, chat_server):
    with_tests(weather, CASES)
    recorded = flowrun("test", str(weather), "--record", "--base-url", chat_server.base_url)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    weather.write_text(weather.read_text().replace('{contains: "72"}', '{contains: "73"}'))
    done = flowrun("test", str(weather))
    assert done.returncode == 1
    assert f"{weather}::boston FAILED" in done.stdout
    line = next(i for i, text in enumerate(weather.read_text().splitlines(), 1) if '"73"' in text)
    assert f"{weather}:{line}:36: outputs.answer: expected to contain '73', got 'get_current_weather: " in done.stdout
    assert " 0 passed, 1 failed in " in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_case_input_the_run_refuses_fails_that_case_and_the_others_still_run(weather, monkeypatch):
    monkeypatch.setenv("WEATHER_TOKEN", "not-a-number")  # read at run time, so `validate` cannot see it
    text = weather.read_text().replace("inputs:\n", "inputs:\n  token: {type: integer, env: WEATHER_TOKEN}\n", 1)
    weather.write_text(text)
    with_tests(weather, CASES + """\
  - name: also
    inputs: {question: "What's the weather in Paris?", token: 5}
    expect: {outputs: {answer: {contains: "72"}}}
""")
    done = flowrun("test", str(weather), env={"WEATHER_TOKEN": "not-a-number"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "input 'token'" in done.stdout and "no cassette" in done.stdout and " 2 failed" in done.stdout


def test_a_null_default_lets_a_case_give_null(weather):
    weather.write_text(weather.read_text().replace("inputs:\n", "inputs:\n  note: {type: string, default: null}\n", 1))
    flow = load_flow(with_tests(weather, CASES.replace("{question: \"What's the weather in Boston?\"}",
                                                       "{question: \"What's the weather in Boston?\", note: null}")))
    assert flow.tests[0].inputs["note"] is None
    assert resolve_inputs(flow, {"question": "q"})["note"] is None
    assert resolve_inputs(flow, {"question": "q", "note": None})["note"] is None


def test_recording_with_every_cassette_present_needs_no_server_in_mode_once():
    done = flowrun("test", "flows/weather.yaml", "--record-mode", "once")
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_invalid_flow_exit_2(weather):
    with_tests(weather, "tests: [{name: a, expect: {outputs: {nope: x}}}]\n")
    done = flowrun("test", str(weather))
    assert done.returncode == 2
    assert "unknown output 'nope'" in done.stderr and "ERROR (invalid flow" in done.stdout


def test_cli_no_cases_exit_2(weather):
    done = flowrun("test", str(weather))
    assert done.returncode == 2 and "no test cases" in done.stderr


def test_cli_no_case_matching_k_is_an_error_and_no_report(weather):
    with_tests(weather, "tests: [{name: boston, inputs: {question: In Boston?}}]\n")
    done = flowrun("test", str(weather), "-k", "nomatch")
    assert done.returncode == 2 and "error: no test cases matching -k 'nomatch'" in done.stderr
    assert done.stdout == ""  # not "0 passed, 0 failed" first


def test_an_empty_cassette_is_said_to_be_empty_with_the_command_that_records_it(weather):
    with_tests(weather, "tests: [{name: boston, inputs: {question: In Boston?}}]\n")
    cassette = weather.parent / "cassettes" / "weather" / "boston.yaml"
    cassette.parent.mkdir(parents=True)
    cassette.write_text("")  # no recording in it (touched, or cut short)
    done = flowrun("test", str(weather))
    assert done.returncode == 1
    assert "the cassette is empty: it holds no recording at all\n  hint: record it: flowrun test " in done.stdout
    assert "changed since recording" not in done.stdout


@pytest.mark.server
def test_expectations_see_refused_and_cut_answers_recorded_then_replayed(tmp_path, chat_server):
    from flowrunner.testing import Reply

    real = ROOT / "tests" / "data" / "real-responses"
    path = tmp_path / "states.yaml"
    path.write_text("""\
name: states
model: gpt-4o
steps:
  - id: ask
    max_tokens: 50
    messages: [{role: user, content: "List all U.S. states."}]
tests:
  - name: refused
    expect:
      status: failed
      error: {contains: "the model refused: I'm very sorry"}
      finish_reason: stop
  - name: cut
    expect:
      outputs: {ask: {contains: "9. Florida"}}
      finish_reason: length
""")
    flow = load_flow(path)
    chat_server.enqueue(Reply.from_recorded(real / "09-refusal.json"), Reply.from_recorded(real / "11-length-cut.json"))
    for case in flow.tests:
        recorded = run_case(flow, case, record_mode="all", base_url=chat_server.base_url)
        assert recorded.passed, recorded.report()
        replayed = run_case(flow, case)
        assert replayed.passed, replayed.report()
        assert replayed.record is not None and recorded.record is not None
        assert without_timing(replayed.record.to_dict()) == without_timing(recorded.record.to_dict())
    assert replayed.record.steps[0].warnings  # the cut case: replayed, it is still marked
    # Recorded, the refusal is in the cassette as the server sent it, and replays to the same failure.
    refused = run_case(flow, flow.tests[0])
    assert refused.record is not None and refused.record.error["type"] == "RefusalError"


def test_a_malformed_cassette_fails_its_case_naming_the_interaction_and_the_others_still_run(weather, chat_server):
    import yaml

    with_tests(weather, CASES + CASES.replace("tests:\n", "").replace("boston", "paris").replace("Boston", "Paris"))
    recorded = flowrun("test", str(weather), "--record", "--base-url", chat_server.base_url)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    cassette = weather.parent / "cassettes" / "weather" / "boston.yaml"
    data = yaml.safe_load(cassette.read_text())  # damaged as a hand edit or a bad merge would leave it
    del data["interactions"][1]["response"]["body"]
    cassette.write_text(yaml.safe_dump(data))
    done = flowrun("test", str(weather))
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert f"{weather}::boston FAILED" in done.stdout and f"{weather}::paris PASSED" in done.stdout
    assert f"{cassette} is not a readable cassette: interaction 2 of 2 (POST /v1/chat/completions): " \
           "response: no 'body'" in done.stdout
