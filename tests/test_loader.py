"""Loading flow files: the canonical example, and broken flows located to the line and column."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from flowrunner import _yaml
from flowrunner._exceptions import FlowValidationError, Location, Problem, UsageError
from flowrunner._loader import load_flow, load_flow_text
from flowrunner._model import MISSING, Flow
from flowrunner._templating import Template

from conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"

TOOLS = '''
def get_weather(location, unit="celsius"):
    return {"location": location, "unit": unit}

def needs_city(city):
    return city

def anything(**kwargs):
    return kwargs
'''


@pytest.fixture(autouse=True)
def _isolated_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Entry points import `tools` from each test's folder: forget them, and the folder, afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write(folder: Path, text: str, name: str = "flow.yaml", tools: bool = True) -> Path:
    """Write a flow (dedented) and, beside it, a `tools.py` for its entry points."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    if tools:
        (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(FlowValidationError) as info:
        load_flow(path)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    return info.value.problems


def where(problem: Problem) -> str:
    assert problem.location is not None, problem
    return f"{problem.location.line}:{problem.location.column}"


# -- the canonical example ----------------------------------------------------------------------


def test_weather_flow_loads_into_the_expected_flow() -> None:
    flow = load_flow(FLOWS / "weather.yaml")
    assert isinstance(flow, Flow)
    assert flow.name == "weather"
    assert flow.path == FLOWS / "weather.yaml"
    assert flow.model == "gpt-4o-mini"
    assert flow.api == "tools"
    assert flow.defaults == {}
    assert flow.description == "Ask about the weather; the model calls Python functions."

    question = flow.inputs["question"]
    assert question.schema == {"type": "string"}
    assert question.default == "What's the weather in Boston?"
    assert not question.required

    assert list(flow.functions) == ["get_current_weather", "get_foo"]
    weather = flow.functions["get_current_weather"]
    assert weather.entry == "weather_tools:get_current_weather"
    assert weather.func is not None and weather.func.__name__ == "get_current_weather"
    assert '"location": "Boston"' in weather.func(location="Boston")
    assert weather.parameters["required"] == ["location"]
    assert weather.tool()["function"]["name"] == "get_current_weather"
    assert weather.location == Location(str(FLOWS / "weather.yaml"), 8, 3)

    (step,) = flow.steps
    assert step.id == "answer"
    assert step.functions == ("get_current_weather", "get_foo")
    assert step.max_rounds == 5
    assert step.model is None
    assert step.options == {} and step.extra_body == {}
    assert [m.role for m in step.messages] == ["system", "user"]
    user = step.messages[1].content
    assert isinstance(user, Template)
    assert user.source == "{{ inputs.question }}"
    assert user.location == Location(str(FLOWS / "weather.yaml"), 25, 31)
    assert user.render({"inputs": {"question": "Hi?"}}) == "Hi?"

    assert list(flow.outputs) == ["answer"]
    assert flow.outputs["answer"].render({"steps": {"answer": {"content": "Sunny."}}}) == "Sunny."
    assert flow.default_cassette == FLOWS / "cassettes" / "weather.yaml"


@pytest.mark.parametrize("path", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_flow_loads(path: Path) -> None:
    assert load_flow(path).steps


def test_defaults_options_extra_body_and_default_outputs(tmp_path: Path) -> None:
    path = write(tmp_path, """
        model: base
        api: functions
        defaults: {temperature: 0, seed: 7}
        inputs:
          n: {type: integer, enum: [1, 2], default: 2, description: how many}
          text: {}
          maybe: {default: null}
        functions:
          get_weather: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        steps:
          - id: first
            model: other
            max_tokens: 50
            stop: ["\\n"]
            tool_choice: {type: function, function: {name: get_weather}}
            functions: [get_weather]
            extra_body: {top_k: 40}
            on_refusal: output
            on_length: fail
            messages: [{role: user, content: "{{ inputs.text }}", name: alice}]
          - id: second
            messages:
              - role: user
                content: |
                  {{ steps.first.content }} x{{ inputs.n }}
        """)
    flow = load_flow(path)
    assert flow.name == "flow"  # the file's stem
    assert flow.api == "functions"
    assert flow.defaults == {"temperature": 0, "seed": 7}
    assert flow.inputs["n"].schema == {"type": "integer", "enum": [1, 2]}
    assert flow.inputs["n"].description == "how many"
    assert flow.inputs["text"].schema == {"type": "string"} and flow.inputs["text"].default is MISSING
    assert flow.inputs["maybe"].default is None and not flow.inputs["maybe"].required
    first, second = flow.steps
    assert first.model == "other" and second.model is None
    assert first.options == {"max_tokens": 50, "stop": ["\n"],
                             "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    assert first.extra_body == {"top_k": 40}
    assert first.messages[0].name == "alice"
    assert second.max_rounds == 8
    assert (first.on_refusal, first.on_length) == ("output", "fail")  # neither is sent as a request option
    assert (second.on_refusal, second.on_length) == ("fail", "warn")
    # a `|` block: the template starts on the line after the indicator
    assert second.messages[0].content.location == Location(str(path), 25, 11)
    assert list(flow.outputs) == ["second"]
    assert flow.outputs["second"].render({"steps": {"second": {"content": "done"}}}) == "done"


def test_load_flow_text_and_locations_use_the_path_as_given(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = "steps:\n  - id: a\n    messages: [{role: user, content: hi}]\n"
    flow = load_flow_text(text, "inline.yaml", tmp_path)
    assert flow.name == "inline" and flow.path == Path("inline.yaml")

    write(tmp_path, "steps:\n  - id: a\n    mesages: []\n")
    monkeypatch.chdir(tmp_path)
    problems = problems_of(Path("flow.yaml"))
    assert {p.location.file for p in problems if p.location} == {"flow.yaml"}


# -- broken flows: one problem each, at an exact place ------------------------------------------

ONE_STEP = "steps:\n  - id: a\n    messages: [{role: user, content: hi}]\n"

BROKEN = [
    ("misspelt-top-level-key", "modle: gpt-4o\n" + ONE_STEP,
     "1:1", "unknown key 'modle' at the top level", "did you mean 'model'?"),
    ("option-at-top-level", "temperature: 0\n" + ONE_STEP,
     "1:1", "unknown key 'temperature'", "defaults"),
    ("misspelt-step-key", """
        steps:
          - id: a
            modle: gpt-4o
            messages: [{role: user, content: hi}]
        """, "3:5", "unknown key 'modle' in steps[0]", "did you mean 'model'?"),
    ("unknown-key-no-close-match", """
        steps:
          - id: a
            messages: [{role: user, content: hi, zzz: 1}]
        """, "3:42", "unknown key 'zzz' in steps[0].messages[0]", "allowed keys: content, name, role"),
    ("wrong-type", """
        steps:
          - id: a
            max_rounds: five
            messages: [{role: user, content: hi}]
        """, "3:17", "steps[0].max_rounds: expected an integer, got 'five'", None),
    ("out-of-range", """
        steps:
          - id: a
            max_rounds: 500
            messages: [{role: user, content: hi}]
        """, "3:17", "steps[0].max_rounds: expected at most 100, got 500", None),
    ("bad-enum", """
        steps:
          - id: a
            messages:
              - {role: user, content: hi}
              - {role: robot, content: hi}
        """, "5:16", "steps[0].messages[1].role: expected one of: system, developer, user, assistant; got 'robot'",
     None),
    ("missing-messages", "steps:\n  - id: a\n    model: m\n",
     "2:5", "steps[0] is missing required key 'messages'", "messages: The chat messages"),
    ("empty-messages", "steps:\n  - id: a\n    messages:\n",
     "3:14", "steps[0].messages: expected a list, got nothing (null)", "the value is empty"),
    ("missing-steps", "name: x\nmodel: m\n",
     "1:1", "the flow is missing required key 'steps'", "steps: The chat completions to run"),
    ("no-steps", "steps: []\n", "1:8", "steps: expected at least 1 item, got none", None),
    ("bad-step-id", "steps:\n  - id: 2nd\n    messages: [{role: user, content: hi}]\n",
     "2:9", "steps[0].id: invalid value '2nd'", "a step id is letters"),
    ("bad-input-name", "inputs:\n  my question: {}\n" + ONE_STEP,
     "2:3", "invalid name 'my question' in inputs", "an input name is"),
    ("bad-entry-form", "functions:\n  f: {entry: tools.f}\n" + ONE_STEP,
     "2:14", "functions.f.entry: invalid value 'tools.f'", "module:function"),
    ("anyof-picks-the-meant-form", """
        steps:
          - id: a
            response_format: {type: json_schema, json_schema: {name: x, strict: yes, shema: {}}}
            messages: [{role: user, content: hi}]
        """, "3:78", "unknown key 'shema' in steps[0].response_format.json_schema", "did you mean 'schema'?"),
    ("anyof-discriminator", """
        steps:
          - id: a
            response_format: {type: json}
            messages: [{role: user, content: hi}]
        """, "3:29", "expected one of: text, json_object, json_schema; got 'json'", None),
    ("anyof-types", """
        steps:
          - id: a
            stop: 5
            messages: [{role: user, content: hi}]
        """, "3:11", "steps[0].stop: expected a string or a list, got 5", "Up to 4 sequences"),
    ("unknown-function", """
        functions:
          get_weather: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        steps:
          - id: a
            functions: [get_weather, get_wether]
            messages: [{role: user, content: hi}]
        """, "5:30", "unknown function 'get_wether' in steps[0].functions", "did you mean 'get_weather'?"),
    ("unknown-function-none-declared", """
        steps:
          - id: a
            functions: [lookup]
            messages: [{role: user, content: hi}]
        """, "3:17", "unknown function 'lookup'", "declare it under the top-level functions:"),
    ("duplicate-step-id", """
        steps:
          - id: a
            messages: [{role: user, content: hi}]
          - id: a
            messages: [{role: user, content: hi}]
        """, "4:9", "duplicate step id 'a' (steps[0] on line 2 has it too)", "must be unique"),
    ("tool-choice-not-listed", """
        functions:
          get_weather: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
          other: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        steps:
          - id: a
            functions: [get_weather]
            tool_choice: {type: function, function: {name: other}}
            messages: [{role: user, content: hi}]
        """, "7:52", "tool_choice names function 'other', which steps[0] does not list", "get_weather"),
    ("tool-choice-without-functions", """
        steps:
          - id: a
            messages: [{role: user, content: hi}]
            parallel_tool_calls: false
        """, "4:5", "parallel_tool_calls is set on steps[0], which has no functions", "functions: [...]"),
    ("tool-choice-in-defaults-reaches-a-bare-step", """
        functions:
          get_weather: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        defaults: {tool_choice: required}
        steps:
          - id: a
            functions: [get_weather]
            messages: [{role: user, content: hi}]
          - id: b
            messages: [{role: user, content: hi}]
        """, "3:12", "defaults sets tool_choice, but steps[1] ('b') has no functions", "on the steps that list"),
    ("tool-choice-in-defaults-undeclared", """
        functions:
          get_weather: {entry: "tools:get_weather", parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        defaults: {tool_choice: {type: function, function: {name: get_wether}}}
        steps:
          - id: a
            functions: [get_weather]
            messages: [{role: user, content: hi}]
        """, "3:59", "tool_choice names function 'get_wether', which the flow does not declare",
     "did you mean 'get_weather'?"),
    ("template-syntax-error", """
        steps:
          - id: a
            messages:
              - {role: system, content: hello}
              - {role: user, content: "{{ inputs.question"}
        """, "5:31", "template syntax error", "Jinja syntax"),
    ("template-syntax-error-in-block", """
        steps:
          - id: a
            messages:
              - role: user
                content: |
                  line one
                  {% if x %}never closed
        """, "7:1", "template syntax error", None),
    ("reads-later-step", """
        steps:
          - id: a
            messages: [{role: user, content: "{{ steps.b.content }}"}]
          - id: b
            messages: [{role: user, content: hi}]
        """, "3:38", "step 'b' runs after step 'a'; a template can only read earlier steps", "move step 'b'"),
    ("reads-own-step", """
        steps:
          - id: a
            messages: [{role: user, content: "{{ steps['a'].content }}"}]
        """, "3:38", "step 'a' reads its own answer", "only read earlier steps"),
    ("unknown-step", """
        steps:
          - id: first
            messages: [{role: user, content: hi}]
          - id: second
            messages: [{role: user, content: "{{ steps.frist.content }}"}]
        """, "5:38", "unknown step 'frist'", "did you mean 'first'?"),
    ("misspelt-step-attribute", """
        steps:
          - id: first
            messages: [{role: user, content: hi}]
          - id: second
            messages: [{role: user, content: "{{ steps.first.contnt }}"}]
        """, "5:38", "a step has no 'contnt' (in steps.first.contnt)", "did you mean steps.first.content?"),
    ("unknown-step-attribute-in-outputs", ONE_STEP + "outputs:\n  x: \"{{ steps['a']['text'] }}\"\n",
     "5:6", "a step has no 'text' (in steps.a.text)", "a step has only content (its answer's text) and json"),
    ("unknown-step-in-outputs", ONE_STEP + "outputs:\n  x: '{{ steps.b.json }}'\n",
     "5:6", "unknown step 'b'", "step ids: a"),
    ("unknown-input", """
        inputs:
          question: {}
        steps:
          - id: a
            messages: [{role: user, content: "{{ inputs.qestion }}"}]
        """, "5:38", "unknown input 'qestion'", "did you mean 'question'?"),
    ("unknown-input-none-declared", """
        steps:
          - id: a
            messages: [{role: user, content: "{{ inputs.topic }}"}]
        """, "3:38", "unknown input 'topic'", "the flow declares no inputs"),
    ("unknown-variable", """
        steps:
          - id: a
            messages: [{role: user, content: "{{ foo }}"}]
        """, "3:38", "unknown variable 'foo'", "inputs.<name> and steps.<id>.content"),
    ("bare-input-name", """
        inputs:
          topic: {}
        steps:
          - id: a
            messages: [{role: user, content: "About {{ topic }}"}]
        """, "5:38", "unknown variable 'topic'", "did you mean inputs.topic?"),
    ("input-default-mismatch", "inputs:\n  n: {type: integer, default: five}\n" + ONE_STEP,
     "2:31", "inputs.n.default: expected an integer, got 'five'", "(integer)"),
    ("input-default-not-in-enum", "inputs:\n  c: {enum: [red, blue], default: green}\n" + ONE_STEP,
     "2:35", "inputs.c.default: expected one of: red, blue; got 'green'", "one of the input's enum values"),
    ("entry-module-missing", "functions:\n  f: {entry: 'no_such_module:f'}\n" + ONE_STEP,
     "2:14", "cannot import module 'no_such_module'", "beside the flow file"),
    ("entry-attribute-missing", "functions:\n  f: {entry: 'tools:nope'}\n" + ONE_STEP,
     "2:14", "module 'tools' has no attribute 'nope'", "callables in tools: anything, get_weather, needs_city"),
    ("signature-mismatch", textwrap.dedent("""
        functions:
          f:
            entry: tools:needs_city
            parameters: {type: object, properties: {city: {type: string}}}
        """) + ONE_STEP, "3:12",
     "tools:needs_city does not fit the parameters declared for 'f': parameter 'city' has no default but is not in",
     "one keyword argument per property"),
    ("invalid-parameters-schema", textwrap.dedent("""
        functions:
          f:
            entry: tools:get_weather
            parameters:
              type: object
              properties:
                location: {type: strng}
              required: [location]
        """) + ONE_STEP, "7:26",
     "invalid JSON Schema: functions.f.parameters.properties.location.type: expected one of", "did you mean 'string'?"),
    ("parameters-open-without-saying-so", "functions:\n  f: {entry: 'tools:anything', parameters: {type: object}}\n"
     + ONE_STEP, "2:44", "functions.f.parameters is open (it declares no properties), and only declared "
     "arguments reach a function", "declare the arguments under properties (properties: {} for none), or write "
     "additionalProperties: true to let the model pass any"),
    ("parameters-open-by-pattern", "functions:\n  f: {entry: 'tools:anything', parameters: {type: object, "
     "patternProperties: {'^x_': {type: string}}}}\n" + ONE_STEP, "2:44",
     "functions.f.parameters is open (it declares no properties), and only declared arguments reach a function",
     "additionalProperties: true"),
    ("parameters-not-an-object", "functions:\n  f: {entry: 'tools:get_weather', parameters: {type: array}}\n" + ONE_STEP,
     "2:54", "functions.f.parameters must be of type object, got 'array'", "OpenAI requires"),
    ("yaml-syntax-error", "steps:\n  - id: a\n    messages: [{role: user, content: hi}\n",
     "4:1", "YAML syntax error", None),
    ("yaml-unclosed-quote", "steps:\n  - id: a\n    messages:\n      - role: user\n        content: \"Summarize this\n"
     "  - id: b\n    messages: [{role: user, content: hi}]\n",
     "5:18", "YAML syntax error: the string opened by \" here is never closed", 'close the string with "'),
    ("comma-in-flow-mapping", "steps:\n  - id: a\n    messages:\n"
     "      - {role: system, content: You write concise, faithful summaries.}\n",
     "4:52", "unknown key 'faithful summaries.' in steps[0].messages[0]",
     "in a {...} mapping a comma ends the value, so YAML read 'faithful summaries.' as a key; "
     'quote the value: content: "You write concise, faithful summaries."'),
    ("yaml-mapping-values", "description: Note: this breaks\n" + ONE_STEP,
     "1:18", "YAML syntax error: mapping values are not allowed", 'quote a value that contains ": "'),
    ("unquoted-template", "steps:\n  - id: a\n    messages:\n      - role: user\n        content: {{ inputs.q }}\n",
     "5:18", "YAML reads '{{' here as the start of a mapping", 'content: "{{ inputs.question }}"'),
    ("duplicate-key", "model: a\n" + ONE_STEP + "model: b\n",
     "5:1", "duplicate key 'model' at the top level (first at line 1)", "only the last one"),
    ("boolean-key", "inputs:\n  true: {}\n" + ONE_STEP,
     "2:3", "the key 'true' is read by YAML as a boolean", "quote it"),
    ("empty-file", "# nothing but a comment\n", "1:1", "the file is empty", "steps:"),
    ("top-level-list", "- id: a\n  messages: []\n", "1:1", "the top level of a flow must be a mapping", None),
    ("recursive-alias", "steps: &s [*s]\n", "1:8", "recursive alias", None),
    ("too-deep", "x: " + "[" * 300 + "]" * 300 + "\n" + ONE_STEP, None, "nests too deeply", None),
    ("bad-duration", "retry: {max_elapsed: 5 minutes}\n" + ONE_STEP,
     "1:22", "retry.max_elapsed: invalid value '5 minutes'", "like 250ms, 1.5s, 2m or 1h"),
    ("misspelt-retry-key", "retry: {max_atempts: 3}\n" + ONE_STEP,
     "1:9", "unknown key 'max_atempts' in retry", "did you mean 'max_attempts'?"),
    ("retry-on-unknown-condition", "retry: {on: [429, timeouts]}\n" + ONE_STEP,
     "1:19", "retry.on[1]: expected one of: timeout, connection", "did you mean 'timeout'?"),
    ("retry-on-not-an-error-status", "retry: {on: [200]}\n" + ONE_STEP,
     "1:14", "retry.on[0]: expected at least 400, got 200", None),
    ("zero-rpm", "rate_limit: {rpm: 0}\n" + ONE_STEP, "1:19", "rate_limit.rpm: expected at least 1, got 0", None),
    ("duration-of-wrong-type", "functions:\n  f: {entry: 'tools:get_weather', timeout: [1]}\n" + ONE_STEP,
     "2:44", "functions.f.timeout: expected a number or a string, got a list", "A duration: a number of seconds"),
    ("retry-on-a-fraction", "retry: {on: [1.5]}\n" + ONE_STEP,
     "1:14", "retry.on[0]: expected an integer or a string, got 1.5", None),
    ("bad-jitter", "retry: {backoff: {jitter: random}}\n" + ONE_STEP,
     "1:27", "retry.backoff.jitter: expected one of: full, equal, none", None),
    ("bad-on-length", "steps:\n  - id: a\n    on_length: maybe\n    messages: [{role: user, content: hi}]\n",
     "3:16", "steps[0].on_length: expected one of: warn, fail; got 'maybe'", None),
    ("bad-on-refusal", "steps:\n  - id: a\n    on_refusal: ignore\n    messages: [{role: user, content: hi}]\n",
     "3:17", "steps[0].on_refusal: expected one of: fail, output; got 'ignore'", None),
    ("on-max-rounds-without-functions", """
        steps:
          - id: a
            on_max_rounds: answer
            messages: [{role: user, content: hi}]
        """, "3:5", "on_max_rounds is set on steps[0], which has no functions", "remove it"),
    ("max-calls-without-functions", """
        steps:
          - id: a
            max_calls: 4
            messages: [{role: user, content: hi}]
        """, "3:5", "max_calls is set on steps[0], which has no functions", "remove it"),
    ("zero-max-calls", "max_calls: 0\n" + ONE_STEP, "1:12", "max_calls: expected at least 1, got 0", None),
]


@pytest.mark.parametrize(("text", "at", "message", "hint"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_flow_is_located(tmp_path: Path, text: str, at: str | None, message: str,
                                hint: str | None) -> None:
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1, "\n".join(map(str, problems))
    (problem,) = problems
    assert message in problem.message
    if at is not None:
        assert where(problem) == at
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint
    assert str(problem).startswith(str(tmp_path / "flow.yaml"))


def test_parameters_open_on_purpose_or_closed_by_default_load(tmp_path: Path) -> None:
    for parameters in ("{type: object, additionalProperties: true}", "{type: object, properties: {}}", None):
        declared = f", parameters: {parameters}" if parameters else ""
        flow = load_flow(write(tmp_path, "functions:\n  f: {entry: 'tools:anything'" + declared + "}\n"
                               + ONE_STEP.replace("content: hi}]", "content: hi}]\n    functions: [f]")))
        assert flow.functions["f"].func is not None


def test_several_problems_are_reported_together_in_file_order(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, """
        modle: x
        steps:
          - id: a
            max_rounds: 0
            messages: [{role: robot, content: hi}]
          - id: b
        """))
    assert [(where(p), p.message.split(":")[0]) for p in problems] == [
        ("1:1", "unknown key 'modle' at the top level"),
        ("4:17", "steps[0].max_rounds"),
        ("5:23", "steps[0].messages[0].role"),
        ("6:5", "steps[1] is missing required key 'messages'"),
    ]


def test_semantic_problems_are_reported_together(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, """
        functions:
          f: {entry: "tools:nope"}
        steps:
          - id: a
            functions: [g]
            messages: [{role: user, content: "{{ steps.z.content }}"}]
          - id: a
            messages: [{role: user, content: "{{ oops"}]
        """))
    assert [where(p) for p in problems] == ["2:14", "5:17", "6:38", "7:9", "8:38"]


def test_schema_problems_stop_before_semantic_checks(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, """
        functions:
          f: {entry: "tools:nope"}
        steps:
          - id: a
            max_rounds: x
            messages: [{role: user, content: "{{ oops"}]
        """))
    assert [p.message for p in problems] == ["steps[0].max_rounds: expected an integer, got 'x'"]


# -- the file itself ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert problem.location is None
    assert problem.message == f"flow file not found: {tmp_path / 'nope.yaml'}"
    assert problem.hint and "check the path" in problem.hint


def test_missing_file_suggests_the_yaml_suffix(tmp_path: Path) -> None:
    write(tmp_path, ONE_STEP)
    (problem,) = problems_of(tmp_path / "flow")
    assert problem.hint == f"did you mean {tmp_path / 'flow'}.yaml?"


def test_directory(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert problem.location is None and "is a directory" in problem.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_bytes(b"description: caf\xe9\n" + ONE_STEP.encode())
    (problem,) = problems_of(path)
    assert problem.location is None
    assert "is not UTF-8 text (byte 0xe9 on line 1)" in problem.message
    assert problem.hint == "save the file with UTF-8 encoding"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + ONE_STEP.encode())
    assert load_flow(path).steps[0].id == "a"


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(ONE_STEP + "#" * (_yaml.MAX_BYTES + 1), encoding="utf-8")
    (problem,) = problems_of(path)
    assert "larger than 5 MB" in problem.message


def test_huge_string_value_still_loads(tmp_path: Path) -> None:
    big = "x" * 2_000_000
    flow = load_flow(write(tmp_path, ONE_STEP.replace("content: hi", f"content: {big}")))
    assert flow.steps[0].messages[0].content.source == big


def test_a_number_with_more_digits_than_python_reads_is_a_located_problem(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_STEP.replace("  - id: a\n", "  - id: a\n    max_rounds: 1" + "0" * 4400 + "\n"))
    (problem,) = problems_of(path)
    assert where(problem) == "3:17"
    assert problem.message == "this value is a number of 4,401 digits, more than the 4,300 a number may have"
    assert problem.hint is not None and "max_rounds" not in problem.hint


def test_a_long_number_is_described_by_its_size_not_quoted_whole(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_STEP.replace("  - id: a\n", "  - id: a\n    max_rounds: 1" + "0" * 4000 + "\n"))
    (problem,) = problems_of(path)
    assert problem.message == "steps[0].max_rounds: expected at most 100, got a number of 4,001 digits"


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    path = write(tmp_path, "\n".join(levels) + "\n" + ONE_STEP)
    # 9**9 nodes if expanded: refused by counting nodes while walking, long before that.
    (problem,) = problems_of(path)
    assert "the document expands to too many nodes" in problem.message
    assert "YAML aliases?" in problem.message
    assert problem.location is not None


def test_one_big_template_repeated_by_aliases_validates_quickly(tmp_path: Path) -> None:
    # 15,000 aliases of one 4 MB message: compiled once, not 15,000 times (that took hours).
    big = "x" * 4_000_000
    messages = [f"      - {{role: user, content: &big {big}}}"] + ["      - {role: user, content: *big}"] * 15_000
    path = tmp_path / "flow.yaml"
    path.write_text("steps:\n  - id: a\n    messages:\n" + "\n".join(messages) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "validate", str(path)], capture_output=True,
                          text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_repeated_template_is_checked_at_each_place(tmp_path: Path) -> None:
    # The same source twice is compiled once (cached by source), and each place still gets its problem.
    problems = problems_of(write(tmp_path, """
        steps:
          - id: a
            messages:
              - {role: user, content: "{{ inputs.nope }}"}
              - {role: user, content: "{{ inputs.nope }}"}
        """))
    assert [(where(p), p.message) for p in problems] == [("4:31", "unknown input 'nope' (in inputs.nope)"),
                                                          ("5:31", "unknown input 'nope' (in inputs.nope)")]


def test_a_template_nesting_too_deeply_is_located(tmp_path: Path) -> None:
    deep = "{{ " + "(" * 500 + "1" + ")" * 500 + " }}"  # was a RecursionError out of flowrun validate
    (problem,) = problems_of(write(tmp_path, ONE_STEP.replace("content: hi", f'content: "{deep}"')))
    assert problem.message == "template too complex: it nests more than 40 levels deep"
    assert problem.location is not None


def test_too_many_nodes_without_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, "x: [" + ", ".join(["1"] * (_yaml.MAX_NODES + 1)) + "]\n" + ONE_STEP)
    (problem,) = problems_of(path)
    assert "the document has too many nodes" in problem.message


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, """
        steps:
          - &first
            id: a
            max_rounds: 3
            messages: &messages [{role: user, content: hi}]
          - <<: *first
            id: b
            messages: *messages
        """))
    first, second = flow.steps
    assert (first.id, second.id, second.max_rounds) == ("a", "b", 3)
    assert second.messages[0].content.source == "hi"


@pytest.mark.parametrize("loader", ["_CLoader", "_PyLoader"])
@pytest.mark.parametrize(("text", "at", "message"), [
    ("a: b: c\n", "1:5", "YAML syntax error: mapping values are not allowed"),
    ("a: 1\nb: \"two\nc: 3\n", "2:4", "the string opened by \" here is never closed (the file ends inside it)"),
    ("a: [x, 'y]\nb: 2\n", "1:8", "the string opened by ' here is never closed"),
    ("a: 1\na: 2\n", "2:1", "duplicate key 'a'"),
    ("a: \x07\n", "1:4", "a character YAML does not allow (U+0007)"),
    ("a: &a [1, *a]\n", "1:4", "recursive alias"),
    ("a: !custom x\n", "1:4", "could not determine a constructor for the tag '!custom'"),
])
def test_both_yaml_backends_agree(monkeypatch: pytest.MonkeyPatch, loader: str, text: str, at: str,
                                  message: str) -> None:
    if not hasattr(_yaml, loader):
        pytest.skip("PyYAML without libyaml")
    monkeypatch.setattr(_yaml, "_LOADER", getattr(_yaml, loader))
    with pytest.raises(FlowValidationError) as info:
        _yaml.parse_yaml(text, "f.yaml")
    (problem,) = info.value.problems
    assert where(problem) == at and message in problem.message


def test_positions_keys_values_and_fallback() -> None:
    data, positions = _yaml.parse_yaml("a:\n  b: [1, {c: 'x'}]\nlogit: {50256: -1}\nd: 2024-01-01\n", "f.yaml")
    assert data == {"a": {"b": [1, {"c": "x"}]}, "logit": {"50256": -1}, "d": "2024-01-01"}
    assert positions.key(("a", "b")) == Location("f.yaml", 2, 3)
    assert positions.value(("a", "b")) == Location("f.yaml", 2, 6)
    assert positions.value(("a", "b", 1, "c")) == Location("f.yaml", 2, 14)
    assert positions.key(("a", "b", 0)) == Location("f.yaml", 2, 7)  # a list item is its own key
    assert positions.value(("a", "b", 1, "missing", 3)) == Location("f.yaml", 2, 10)
    assert positions.value(()) == Location("f.yaml", 1, 1)
    assert _yaml.format_path(("steps", 0, "messages", 1, "role")) == "steps[0].messages[1].role"
    assert _yaml.format_path(("functions", "get-weather")) == "functions['get-weather']"


def test_retry_and_rate_limit_are_built_with_step_keys_over_the_flows(tmp_path: Path) -> None:
    from flowrunner._retry import Backoff, RetryPolicy
    from flowrunner._ratelimit import RateLimit

    flow = load_flow(write(tmp_path, """
        rate_limit: {rpm: 3, rpd: 200}
        retry:
          max_attempts: 6
          on: [429, 503, timeout]
          backoff: {initial: 250ms, max: 2m}
          max_elapsed: 5m
        steps:
          - id: a
            messages: [{role: user, content: hi}]
          - id: b
            retry: {max_attempts: 2, backoff: {jitter: none}}
            messages: [{role: user, content: hi}]
        """))
    assert flow.rate_limit == RateLimit(rpm=3, rpd=200)
    first, second = flow.steps
    assert first.retry == RetryPolicy(max_attempts=6, on=frozenset({"429", "503", "timeout"}),
                                      backoff=Backoff(initial=0.25, max=120.0), max_elapsed=300.0)
    assert second.retry == RetryPolicy(max_attempts=2, on=frozenset({"429", "503", "timeout"}),
                                       backoff=Backoff(initial=0.25, max=120.0, jitter="none"), max_elapsed=300.0)


def test_without_retry_a_step_gets_the_default_policy(tmp_path: Path) -> None:
    from flowrunner._retry import RetryPolicy

    assert load_flow(write(tmp_path, ONE_STEP)).steps[0].retry == RetryPolicy()


def test_function_policies_and_a_zero_timeout(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    flow = load_flow(write(tmp_path, """
        functions:
          get_weather:
            entry: tools:get_weather
            on_error: fail
            on_invalid_arguments: fail
            timeout: 1.5s
            parameters: {type: object, properties: {location: {type: string}, unit: {type: string}},
                         required: [location]}
        steps:
          - id: a
            functions: [get_weather]
            messages: [{role: user, content: hi}]
        """))
    spec = flow.functions["get_weather"]
    assert (spec.on_error, spec.on_invalid_arguments, spec.timeout) == ("fail", "fail", 1.5)
    problems = problems_of(write(tmp_path, """
        functions:
          get_weather: {entry: "tools:get_weather", timeout: 0, parameters: {type: object, properties: {location: {type: string}}, required: [location]}}
        steps:
          - id: a
            functions: [get_weather]
            messages: [{role: user, content: hi}]
        """))
    assert [p.message for p in problems] == ["a function timeout of 0 would fail every call"]


@pytest.mark.parametrize("loader", ["_CLoader", "_PyLoader"])
def test_on_off_yes_no_keys_are_names_but_true_is_not(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    if not hasattr(_yaml, loader):
        pytest.skip("PyYAML without libyaml")
    monkeypatch.setattr(_yaml, "_LOADER", getattr(_yaml, loader))
    data, _ = _yaml.parse_yaml("retry: {on: [429]}\nx: {off: 1, yes: 2, No: 3}\n", "f.yaml")
    assert data == {"retry": {"on": [429]}, "x": {"off": 1, "yes": 2, "No": 3}}


def test_durations_too_long_for_any_timer_are_located_problems(make_flow):
    from flowrunner import FlowValidationError

    with pytest.raises(FlowValidationError) as caught:
        make_flow("""
            name: long
            model: m
            retry: {max_elapsed: 99999999999h, backoff: {initial: 1s, multiplier: 1.0e+300}}
            steps:
              - id: a
                retry: {backoff: {max: 9999999h}}
                messages: [{role: user, content: hi}]
            """)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2 and all("is longer than a duration may be (at most a week, 168h)" in m for m in messages)
