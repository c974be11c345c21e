"""A flow's `tests:`: what the loader builds from it, and every mistake it reports with its place."""

from __future__ import annotations

import textwrap

import pytest

from flowrunner import FlowValidationError, load_flow
from flowrunner._expect import CallsCheck, FinishReasonCheck, OutputCheck, RoundsCheck, StatusCheck
from flowrunner._loader import load_flow_text

from conftest import FLOWS

HEAD = """\
model: m
inputs:
  question: {type: string}
  count: {type: integer, default: 1}
functions:
  weather:
    entry: json:dumps
    parameters: {type: object, properties: {obj: {}}, required: [obj]}
steps:
  - id: answer
    messages: [{role: user, content: "{{ inputs.question }}"}]
    functions: [weather]
outputs:
  answer: "{{ steps.answer.content }}"
"""


def load(tests: str):
    return load_flow_text(HEAD + textwrap.dedent(tests), "f.yaml")


def problems(tests: str) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        load(tests)
    return [str(p) for p in caught.value.problems]


def test_a_case_becomes_checks():
    flow = load("""\
        tests:
          - name: boston
            inputs: {question: "Weather in Boston?"}
            expect:
              calls: [{name: weather, arguments: {obj: {contains: Boston}}}]
              outputs: {answer: {contains: "72", regex: "\\\\d+"}}
              rounds: 2
              finish_reason: stop
        """)
    (case,) = flow.tests
    assert case.name == "boston" and case.inputs == {"question": "Weather in Boston?"}
    assert [type(c) for c in case.checks] == [StatusCheck, OutputCheck, CallsCheck, RoundsCheck, FinishReasonCheck]
    output = case.checks[1]
    assert isinstance(output, OutputCheck)
    assert [(m.kind, m.expected, str(m.location)) for m in output.expectation.matchers] == [
        ("contains", "72", "f.yaml:20:36"), ("regex", "\\d+", "f.yaml:20:49")]


def test_a_plain_mapping_is_compared_whole():
    flow = load("""\
        tests:
          - name: a
            inputs: {question: q}
            expect: {calls: [{name: weather, arguments: {obj: {city: Boston}}}]}
        """)
    check = flow.tests[0].checks[1]
    assert isinstance(check, CallsCheck)
    ((_, expectation, _),) = check.calls[0].arguments
    assert [(m.kind, m.expected) for m in expectation.matchers] == [("equals", {"city": "Boston"})]


@pytest.mark.parametrize("tests, expected", [
    ("""\
     tests:
       - {name: a, inputs: {question: q}}
       - {name: a, inputs: {question: q}}
     """, "f.yaml:17:12: error: duplicate test name 'a' (tests[0] on line 16 has it too)"),
    ("tests: [{name: a, inputs: {questoin: q}}]\n",
     "f.yaml:15:28: error: unknown input 'questoin' in tests[0].inputs\n  hint: did you mean 'question'?"),
    ("tests: [{name: a, inputs: {question: q, count: many}}]\n",
     "f.yaml:15:48: error: tests[0].inputs.count: expected an integer, got 'many'"),
    ("tests: [{name: a}]\n", "error: tests[0] does not give input 'question', which has no default"),
    ("tests: [{name: a, inputs: {question: q}, expect: {calls: [{name: wether}]}}]\n",
     "f.yaml:15:66: error: tests[0].expect.calls[0] names function 'wether', which the flow does not declare\n"
     "  hint: did you mean 'weather'?"),
    ("tests: [{name: a, inputs: {question: q}, expect: {calls: [{name: weather, step: nope}]}}]\n",
     "unknown step 'nope' in tests[0].expect.calls[0]"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outputs: {answr: x}}}]\n",
     "f.yaml:15:61: error: unknown output 'answr' in tests[0].expect.outputs\n  hint: did you mean 'answer'?"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outputs: {answer: {regex: '('}}}}]\n",
     "f.yaml:15:77: error: invalid regex '(': missing ), unterminated subpattern at position 0"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outputs: {answer: {schema: {type: 3}}}}}]\n",
     "error: invalid JSON Schema: tests[0].expect.outputs.answer.schema.type"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outputs: {answer: {contains: x, has: y}}}}]\n",
     "error: 'has' is not a matcher (in tests[0].expect.outputs.answer)"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outputs: {answer: {contain: Hello}}}}]\n",
     "f.yaml:15:70: error: 'contain' is not a matcher (in tests[0].expect.outputs.answer)\n"
     "  hint: did you mean 'contains'?"),
    ("tests: [{name: a, inputs: {question: q}, expect: {calls: [{name: weather, arguments: {city: {regexp: B}}}]}}]\n",
     "'regexp' is not a matcher (in tests[0].expect.calls[0].arguments.city)\n  hint: did you mean 'regex'?"),
    ("tests: [{name: a, inputs: {question: q}, expect: {rounds: {answr: 1}}}]\n",
     "error: unknown step 'answr' in tests[0].expect.rounds\n  hint: did you mean 'answer'?"),
    ("tests: [{name: a, inputs: {question: q}, expect: {error: boom}}]\n",
     "error: `error` is checked only when the run is expected to fail\n  hint: add status: failed"),
    ("tests: [{name: 'a b', inputs: {question: q}}]\n", "a test name is letters, digits"),
    ("tests: [{name: a, inputs: {question: q}, expect: {outcome: x}}]\n", "unknown key 'outcome'"),
    ("tests: [{name: a, inputs: {question: q}, expect: {cost: {max: -1}}}]\n",
     "f.yaml:15:63: error: tests[0].expect.cost.max: expected at least 0, got -1"),
    ("tests: [{name: a, inputs: {question: q}, expect: {cost: {most: 1}}}]\n", "unknown key 'most'"),
    ("tests: [{name: a, inputs: {question: q}, expect: {cost: {}}}]\n", "tests[0].expect.cost"),
    ("tests: [{name: a, inputs: {question: q}, expect: {latency: {max: 5 secs}}}]\n",
     "f.yaml:15:66: error: tests[0].expect.latency.max: invalid value '5 secs'\n  hint: a duration is a number with a unit"),
    ("tests: [{name: a, inputs: {question: q}, expect: {latency: {max: 99999999h}}}]\n",
     "f.yaml:15:66: error: '99999999h' is longer than a duration may be (at most a week, 168h)"),
    ("tests: [{name: a, inputs: {question: q}, expect: {tokens: {max: 1.5}}}]\n",
     "f.yaml:15:65: error: tests[0].expect.tokens.max: expected an integer, got 1.5"),
    ("tests: [{name: a, inputs: {question: q}, expect: {tokens: {min: 10, max: 5}}}]\n",
     "f.yaml:15:65: error: tests[0].expect.tokens: min (10) is more than max (5)\n  hint: no run could pass: swap them"),
])
def test_mistakes_are_located(tests, expected):
    found = problems(tests)
    assert any(expected in p for p in found), found


def test_shipped_flows_have_tests():
    for name in ("weather", "hello", "legacy_functions", "summarize_translate"):
        assert load_flow(FLOWS / f"{name}.yaml").tests, name
