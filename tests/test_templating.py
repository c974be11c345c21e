"""Templates: compiled with their place in the file, strict about missing values, and sandboxed."""

from __future__ import annotations

from typing import Any

import pytest

from flowrunner._exceptions import Location, Problem, TemplateError
from flowrunner._templating import Template, compile_template

HERE = Location("flow.yaml", 7, 18)
CONTEXT: dict[str, Any] = {
    "inputs": {"question": "Why?", "n": 3},
    "steps": {"first": {"content": "Because.", "json": {"items": [1, 2]}}},
}


def compiled(source: str) -> Template:
    template = compile_template(source, HERE)
    assert isinstance(template, Template), template
    return template


def test_renders_inputs_and_steps() -> None:
    template = compiled("{{ inputs.question }} {{ steps.first.content }} {{ steps['first'].json | tojson }}")
    assert template.render(CONTEXT) == 'Why? Because. {"items": [1, 2]}'
    assert template.location == HERE and template.source.startswith("{{ inputs")


def test_trailing_newline_is_kept() -> None:
    assert compiled("line\n").render({}) == "line\n"


@pytest.mark.parametrize(("source", "fragment"), [
    ("{{ missing }}", "'missing' is undefined"),
    ("{{ inputs.nope }}", "has no attribute 'nope'"),
    ("{{ steps.first.json.missing }}", "has no attribute 'missing'"),
    ("{% for x in inputs.n %}{% endfor %}", "TypeError"),
])
def test_render_failures_are_template_errors_naming_the_place(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        compiled(source).render(CONTEXT)
    assert info.value.location == HERE
    assert str(info.value).startswith("flow.yaml:7:18: ")
    assert fragment in str(info.value)


def test_syntax_error_is_a_problem_at_the_template() -> None:
    problem = compile_template("{{ inputs.question", HERE)
    assert isinstance(problem, Problem)
    assert problem.location == HERE
    assert problem.message.startswith("template syntax error: ")


def test_syntax_error_on_a_later_line_is_offset() -> None:
    problem = compile_template("first line\nsecond\n{% if x %}never closed", HERE)
    assert isinstance(problem, Problem)
    assert problem.location == Location("flow.yaml", 9, 1)


# Each escape either is refused while rendering (a TemplateError) or renders something harmless.
REFUSED = "refused"
ESCAPES = [
    ("{{ ''.__class__.__mro__ }}", REFUSED),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", REFUSED),
    ("{{ cycler.__init__.__globals__ }}", REFUSED),
    ("{{ joiner.__init__.__globals__.os }}", REFUSED),
    ("{{ lipsum.__globals__ }}", REFUSED),
    ("{{ namespace.__init__ }}", REFUSED),
    ("{{ dict.__mro__ }}", REFUSED),
    ("{{ self._TemplateReference__context }}", REFUSED),
    ("{{ [].append(1) }}", REFUSED),  # the immutable sandbox: no mutating methods
    ("{{ inputs.update(question='changed') }}", REFUSED),
    ("{% set x = inputs.pop('question') %}{{ x }}", REFUSED),
    ("{{ inputs.__class__ }}", REFUSED),
    ("{{ inputs | attr('__class__') }}", REFUSED),
    ("{{ '{0.__class__}'.format(inputs) }}", REFUSED),  # str.format goes through the sandbox too
    ("{{ range(10 ** 9) | length }}", "Range too big"),  # the sandbox caps range()
    ("{{ self }}", "<TemplateReference None>"),  # harmless: no way in from here
    ("{{ inputs.question.format(inputs) }}", "Why?"),
]


@pytest.mark.parametrize(("source", "outcome"), ESCAPES, ids=[source for source, _ in ESCAPES])
def test_sandbox_escapes(source: str, outcome: str) -> None:
    template = compiled(source)
    if outcome == REFUSED:
        with pytest.raises(TemplateError, match="refused by the template sandbox"):
            template.render(CONTEXT)
    elif outcome == "Range too big":
        with pytest.raises(TemplateError, match=outcome):
            template.render(CONTEXT)
    else:
        assert template.render(CONTEXT) == outcome


def test_rendering_does_not_change_the_context() -> None:
    context = {"inputs": {"question": "Why?"}, "steps": {}}
    with pytest.raises(TemplateError):
        compiled("{{ inputs.update(question='changed') }}").render(context)
    assert context == {"inputs": {"question": "Why?"}, "steps": {}}


@pytest.mark.parametrize(("source", "steps", "inputs"), [
    ("{{ steps.a.content }} {{ steps['b'].json }} {{ steps[\"c\"] }}", ["a", "b", "c"], []),
    ("{% if steps.a.json.ok %}{{ inputs.x }}{% endif %}{{ inputs['y'] | upper }}", ["a"], ["x", "y"]),
    ("{% for s in steps %}{{ steps[s] }}{% endfor %}", [], []),  # dynamic: nothing to check
    ("{{ other.steps.a }}", [], []),
])
def test_references(source: str, steps: list[str], inputs: list[str]) -> None:
    template = compiled(source)
    assert template.references("steps") == steps
    assert template.references("inputs") == inputs


@pytest.mark.parametrize(("source", "names"), [
    ("{{ inputs.q }}{{ steps.a.content }}", {"inputs", "steps"}),
    ("{% set y = inputs.q %}{{ y }}", {"inputs"}),
    ("{% for item in steps.a.json %}{{ item }}{{ loop.index }}{% endfor %}", {"steps"}),
    ("{{ foo }} {{ bar.baz }}", {"foo", "bar"}),
    ("plain text", set()),
])
def test_names(source: str, names: set[str]) -> None:
    assert compiled(source).names() == names


@pytest.mark.parametrize("source", ["{{ 'x' * 10**10 }}", "{{ [1] * 10000000 }}", "{{ 2 ** 100000000 }}", "{{ 3 * 'ab' * 1000000 }}"])
def test_templates_cannot_exhaust_memory(source: str) -> None:
    from flowrunner._templating import Template

    with pytest.raises(TemplateError, match="over the limit"):
        Template(source, Location("f.yaml", 1, 1)).render({})


def test_ordinary_arithmetic_still_works() -> None:
    from flowrunner._templating import Template

    assert Template("{{ 2 ** 10 }} {{ '-' * 3 }} {{ 3 * [0] }}", None).render({}) == "1024 --- [0, 0, 0]"


@pytest.mark.parametrize("source", ["You are a helpful assistant.", "two\nlines\n", "{# a note #}text",
                                    "{% raw %}{{ kept }}{% endraw %}", ""])
def test_a_template_without_expressions_renders_its_text_without_jinja(source, monkeypatch):
    template = Template(source, None)
    expected = template._template.render({})
    monkeypatch.setattr(template, "_template", None)  # rendering it would fail
    assert template.render({"inputs": {}}) == expected


def test_a_template_with_an_expression_is_rendered_each_time():
    template = Template("Hello {{ name }}", None)
    assert [template.render({"name": n}) for n in ("a", "b")] == ["Hello a", "Hello b"]
