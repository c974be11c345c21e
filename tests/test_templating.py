"""Templates: compiled with their place in the file, strict about missing values, and sandboxed."""

from __future__ import annotations

from typing import Any, Iterator

import jinja2
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


@pytest.mark.parametrize("source", [
    "{{ " + "(" * 200 + "1" + ")" * 200 + " }}",
    "{{ " + "[" * 200 + "]" * 200 + " }}",
    "{{ a" + ".b" * 3000 + " }}",
    "{{ a" + " | e" * 3000 + " }}",
    "{{ " + " + ".join(["a"] * 3000) + " }}",
    "{% if x %}" * 120 + "{% endif %}" * 120,  # Python's compiler: too many levels of indentation
    "{% for x in y %}" * 30 + "{% endfor %}" * 30,  # Python's compiler: too many statically nested blocks
], ids=["parentheses", "lists", "attributes", "filters", "additions", "ifs", "loops"])
def test_a_template_nesting_too_deeply_is_a_problem_not_a_crash(source: str) -> None:
    problem = compile_template(source, HERE)
    assert isinstance(problem, Problem), problem
    assert problem.location == HERE
    assert problem.message.startswith("template too complex: ") and ("nests" in problem.message or "chains" in problem.message)
    assert problem.hint == "split it into smaller templates"


def test_a_template_with_too_many_parts_is_a_problem() -> None:
    problem = compile_template("{{ inputs.question }}\n" * 4000, HERE)  # 24,000 tokens: 6 a line
    assert isinstance(problem, Problem), problem
    assert problem.message == "template too complex: it has over 20,000 parts (names, operators, tags, pieces of text)"
    assert problem.location == HERE
    assert isinstance(compile_template("{{ inputs.question }}\n" * 3000, HERE), Template)
    assert isinstance(compile_template("x" * 4_000_000, HERE), Template)  # text is one part however long


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


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The sources Jinja parses (compiles) from now on."""
    seen: list[str] = []
    parse = jinja2.Environment.parse

    def counting(self: jinja2.Environment, source: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return parse(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "parse", counting)
    yield seen


def test_each_distinct_source_is_compiled_once(parses: list[str]) -> None:
    source = "{{ inputs.question }} -- test_each_distinct_source_is_compiled_once"
    places = [Location("flow.yaml", line, 7) for line in range(1, 6)]
    templates = [compile_template(source, place) for place in places]
    other = compile_template(source + " (another)", HERE)
    assert parses == [source, source + " (another)"]
    assert [t.location for t in templates if isinstance(t, Template)] == places  # each keeps its place
    assert isinstance(other, Template) and other.render(CONTEXT).startswith("Why? -- ")
    with pytest.raises(TemplateError) as info:
        templates[3].render({})  # type: ignore[union-attr]
    assert str(info.value).startswith("flow.yaml:4:7: ")


def test_a_syntax_error_is_compiled_once_and_located_at_each_place(parses: list[str]) -> None:
    source = "first line\n{{ never closed -- test_a_syntax_error_is_compiled_once"
    problems = [compile_template(source, Location("flow.yaml", line, 3)) for line in (10, 20)]
    assert parses == [source]
    assert [p.location for p in problems if isinstance(p, Problem)] == [Location("flow.yaml", 11, 1),
                                                                         Location("flow.yaml", 21, 1)]


@pytest.mark.parametrize("source", ["You are a helpful assistant.", "two\nlines\n", "{# a note #}text",
                                    "{% raw %}{{ kept }}{% endraw %}", ""])
def test_a_template_without_expressions_renders_its_text_without_jinja(source, monkeypatch):
    template = Template(source, None)
    expected = template._compiled.template.render({})
    monkeypatch.setattr(template._compiled, "template", None)  # rendering it would fail
    assert template.render({"inputs": {}}) == expected


def test_a_template_with_an_expression_is_rendered_each_time():
    template = Template("Hello {{ name }}", None)
    assert [template.render({"name": n}) for n in ("a", "b")] == ["Hello a", "Hello b"]


@pytest.mark.parametrize("depth", [41, 60])
def test_how_deep_a_template_may_nest_does_not_depend_on_the_stack(depth: int) -> None:
    """The bound is counted, not found by a RecursionError: a deeper recursion limit (another test's, or an
    application's that embeds flowrunner) neither lets a too-deep template through nor crashes on one."""
    import sys

    source = "{{ " + "[" * depth + "]" * depth + " }} -- depth test"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        problem = compile_template(source, HERE)
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(problem, Problem) and "nests more than 40 levels deep" in problem.message


def test_a_template_within_the_bounds_compiles() -> None:
    assert isinstance(compile_template("{{ " + "[" * 40 + "]" * 40 + " }}" + "{{ a" + ".b" * 100 + " }}", HERE),
                      Template)
