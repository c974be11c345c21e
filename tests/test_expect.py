"""Matchers and checks against run records: each failure says what was expected, what came, and where."""

from __future__ import annotations

import pytest

from flowrunner import CallRecord, Location, RoundRecord, RunRecord, StepRecord
from flowrunner._expect import (CallsCheck, ExpectedCall, Expectation, FinishReasonCheck, Matcher, OutputCheck,
                                RoundsCheck, StatusCheck, check_record)

from test_json import DEEP, LONG_INT

AT = Location("f.yaml", 3, 7)


@pytest.mark.parametrize("kind, expected, actual, ok", [
    ("equals", "a", "a", True),
    ("equals", "a", "b", False),
    ("equals", 3, "3", True),            # outputs are text: `3` in YAML means "3"
    ("equals", 3, 3, True),
    ("equals", True, 1, False),          # a boolean is not a number
    ("equals", {"a": [1]}, {"a": [1]}, True),
    ("contains", "72", "it is 72 F", True),
    ("contains", "72", "it is 71 F", False),
    ("contains", "x", ["x", "y"], True),
    ("contains", "k", {"k": 1}, True),
    ("contains", "x", 5, False),
    ("not_contains", "rain", "sunny", True),
    ("not_contains", "sun", "sunny", False),
    ("regex", r"^\d+$", "123", True),
    ("regex", r"^\d+$", "12a", False),
    ("regex", r'"a": 1', {"a": 1}, True),  # non-text values are searched as JSON
    ("schema", {"type": "object", "required": ["a"]}, '{"a": 1}', True),
    ("schema", {"type": "object", "required": ["a"]}, '```json\n{"a": 1}\n```', True),
    ("schema", {"type": "object", "required": ["a"]}, '{"b": 1}', False),
    ("schema", {"type": "object"}, "not json", False),
    ("schema", {"type": "string", "pattern": "^[0-9]+$"}, '"12\\n"', False),  # JSON Schema's $: the end
])
def test_matchers(kind, expected, actual, ok):
    assert (Matcher(kind, expected).mismatch(actual) is None) is ok


def test_schema_matcher_checks_arguments_as_sent():
    matcher = Matcher("schema", {"type": "string"})
    assert matcher.mismatch("Paris", text_is_json=False) is None
    assert "expected JSON" in (matcher.mismatch("Paris") or "")


def test_schema_failure_says_where_and_what():
    why = Matcher("schema", {"type": "object", "properties": {"n": {"type": "integer"}}}).mismatch('{"n": "x"}')
    assert why is not None and "at ['n']" in why and "'x' is not of type 'integer'" in why


def record(*rounds_per_step: list[RoundRecord], status: str = "succeeded", error: str | None = None,
           outputs: dict[str, str] | None = None) -> RunRecord:
    steps = [StepRecord(id=f"s{i}", model="m", rounds=list(rounds)) for i, rounds in enumerate(rounds_per_step)]
    run = RunRecord(flow="f", file="f.yaml", inputs={}, status=status, outputs=outputs or {}, steps=steps)  # type: ignore[arg-type]
    if error:
        run.error = {"type": "RunError", "message": error, "step": None}
    return run


def call_round(*calls: tuple[str, dict | None]) -> RoundRecord:
    return RoundRecord("id", "m", "tool_calls", None,
                       calls=[CallRecord(id="c", name=n, arguments=a, raw_arguments=None if a is not None else "{bad")
                              for n, a in calls])


def text_round(reason: str = "stop") -> RoundRecord:
    return RoundRecord("id", "m", reason, "hi")


def test_output_failure_is_located_and_quotes_both_sides():
    check = OutputCheck("answer", Expectation((Matcher("contains", "72", AT),)), AT)
    (failure,) = check.failures(record([text_round()], outputs={"answer": "It is 71."}))
    assert str(failure) == "f.yaml:3:7: outputs.answer: expected to contain '72', got 'It is 71.'"


def test_missing_output_lists_the_outputs():
    check = OutputCheck("nope", Expectation((Matcher("equals", "x"),)))
    (failure,) = check.failures(record([text_round()], outputs={"answer": "a"}))
    assert "no such output" in failure.message and "answer" in failure.message


def test_calls_must_all_be_listed_in_order():
    run = record([call_round(("weather", {"location": "Boston"}), ("weather", {"location": "Tokyo"})), text_round()])
    both = CallsCheck((ExpectedCall("weather", (("location", Expectation((Matcher("equals", "Boston"),)), None),)),
                       ExpectedCall("weather", (("location", Expectation((Matcher("contains", "Tok"),)), None),))))
    assert both.failures(run) == []
    (failure,) = CallsCheck((ExpectedCall("weather"),), AT).failures(run)
    assert failure.message.startswith("expected 1 call, the model made 2: weather({\"location\": \"Boston\"}) in step 's0'")
    swapped = CallsCheck((ExpectedCall("weather", (("location", Expectation((Matcher("equals", "Tokyo"),)), AT),)),
                          ExpectedCall("weather")))
    (failure,) = swapped.failures(run)
    assert failure.subject == "calls[0].arguments.location"
    assert failure.message == "expected 'Tokyo', got 'Boston'"


@pytest.mark.parametrize("expected, made, message", [
    (ExpectedCall("other"), ("weather", {"location": "X"}), 'expected a call of other, got weather({"location": "X"})'),
    (ExpectedCall("weather", step="s9"), ("weather", {}), "expected in step 's9', made in step 's0'"),
    (ExpectedCall("weather", (("unit", Expectation((Matcher("equals", "c"),)), None),)), ("weather", {}),
     "not given (the call was weather({}))"),
    (ExpectedCall("weather", (("unit", Expectation((Matcher("equals", "c"),)), None),)), ("weather", None),
     "the arguments were not a JSON object: '{bad'"),
])
def test_call_mismatches(expected, made, message):
    (failure,) = CallsCheck((expected,)).failures(record([call_round(made), text_round()]))
    assert failure.message == message


def test_no_calls_expected():
    assert CallsCheck(()).failures(record([text_round()])) == []
    assert CallsCheck(()).failures(record([call_round(("w", {})), text_round()]))


def test_rounds_total_and_per_step():
    run = record([call_round(("w", {})), text_round()], [text_round()])
    assert RoundsCheck(3).failures(run) == []
    assert RoundsCheck(2, "s0").failures(run) == []
    (failure,) = RoundsCheck(1, "s0", AT).failures(run)
    assert str(failure) == "f.yaml:3:7: rounds.s0: expected 1, got 2 (s0: 2, s1: 1)"


def test_finish_reason_of_the_last_response():
    check = FinishReasonCheck(Expectation((Matcher("equals", "stop"),)))
    assert check.failures(record([text_round("stop")])) == []
    (failure,) = check.failures(record([text_round("length")]))
    assert failure.message == "expected 'stop', got 'length'"


def test_a_failed_run_fails_the_case_and_silences_the_rest():
    run = record([text_round()], status="failed", error="max_rounds reached")
    checks = (StatusCheck(location=AT), OutputCheck("answer", Expectation((Matcher("equals", "x"),))))
    (failure,) = check_record(checks, run)
    assert failure.message == "the run failed: max_rounds reached"


def test_expected_failure_and_its_error():
    run = record([text_round()], status="failed", error="max_rounds reached")
    assert StatusCheck("failed", Expectation((Matcher("contains", "max_rounds"),))).failures(run) == []
    assert StatusCheck("failed").failures(record([text_round()]))[0].message == \
        "expected the run to fail, but it succeeded"


def test_contains_a_list_or_mapping_in_a_mapping_is_a_mismatch_not_a_crash():
    from flowrunner._expect import Matcher

    assert Matcher("contains", ["a"]).mismatch({"x": 1}, False) == 'expected to contain ["a"], got {"x": 1}'
    assert Matcher("contains", {"a": 1}).mismatch({"a": 1}, False) is not None
    assert Matcher("contains", "x").mismatch({"x": 1}, False) is None  # a key
    assert Matcher("contains", True).mismatch("flag: true", False) is None  # JSON text, not Python's True


@pytest.mark.parametrize("output, reason", [('{"a": ' + DEEP + "}", "nested deeper than 100 levels"),
                                            ('{"a": ' + LONG_INT + "}", "a number of 5,000 digits")],
                         ids=["deep", "long-int"])
def test_a_schema_matcher_on_an_output_json_cannot_hold_fails_saying_why(output, reason):
    problem = Matcher("schema", {"type": "object"}).mismatch(output)
    assert problem is not None and problem.startswith("expected JSON, got ") and reason in problem
