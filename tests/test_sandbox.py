"""The template sandbox's bounds: every way a template can build gigabytes or burn the CPU stops at a
limit, as a TemplateError naming the template's place and the bound; ordinary templates render as
Jinja renders them."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowrunner import _budget
from flowrunner._budget import TemplateLimits
from flowrunner._exceptions import Location, TemplateError
from flowrunner._templating import Template

HERE = Location("flow.yaml", 7, 18)

# The bounds, as the error messages name them.
VALUE = "for one value"
OUTPUT = "the template's output is over the limit of 4,000,000 characters"
BUILT = "characters or items in all, the limit for one rendering"
LOOPS = "the template's loops ran over 1,000,000 iterations, the limit for one rendering"
NUMBER = "bits, over the limit of 65,536"
TIME = "s, the limit for one rendering"

DOUBLING = "{% set ns = namespace(v=X) %}{% for i in range(60) %}{% set ns.v = STEP %}{% endfor %}{{ ns.v }}"
MEGA = "{% set m = 'x' * 1000000 %}"  # 1,000,000 characters: as much as one `*` could build before the bounds


def doubling(start: str, step: str) -> str:
    """A loop that doubles `ns.v` 60 times (2**60 if nothing stops it), then prints it."""
    return DOUBLING.replace("X", start).replace("STEP", step)


# (what, template, the bound that stops it). Each built gigabytes or ran for hours before the bounds.
VECTORS = [
    ("str.format width", "{{ '{:>3000000000}'.format('x') }}", VALUE),
    ("str.format nested width", "{{ '{:>{w}}'.format('x', w=3000000000) }}", VALUE),
    ("str.format_map width", "{{ '{x:>3000000000}'.format_map({'x': 1}) }}", VALUE),
    ("str.format of one field many times", "{{ ('{0}' * 100).format('x' * 1000000) }}", VALUE),
    ("str.center", "{{ 'x'.center(3000000000) }}", VALUE),
    ("str.ljust", "{{ 'x'.ljust(3000000000) }}", VALUE),
    ("str.rjust", "{{ 'x'.rjust(3000000000) }}", VALUE),
    ("str.zfill", "{{ 'x'.zfill(3000000000) }}", VALUE),
    ("str.expandtabs", "{{ ('\t' * 1000).expandtabs(3000000) }}", VALUE),
    ("str.replace of the empty string", "{{ ('x' * 100000).replace('', 'y' * 1000) }}", VALUE),
    ("str.replace with a count", "{{ ('x' * 1000000).replace('x', 'y' * 1000, 1000000) }}", VALUE),
    ("str.translate", "{{ ('x' * 1000000).translate({120: 'y' * 1000}) }}", VALUE),
    ("str.join", "{{ ('x' * 1000000).join(['a'] * 10) }}", VALUE),
    ("bytes.center", "{{ 'x'.encode().center(3000000000) }}", VALUE),
    ("int.to_bytes", "{{ (1).to_bytes(3000000000, 'big') }}", VALUE),
    ("tojson indent", "{{ {'a': [1]} | tojson(indent=1000000000) }}", VALUE),
    ("tojson indent as text", MEGA + "{{ {'a': [1]} | tojson(indent=m ~ m) }}", VALUE),
    ("~ doubling in a loop", doubling("'x'", "ns.v ~ ns.v"), VALUE),
    ("+ doubling in a loop", doubling("'x'", "ns.v + ns.v"), VALUE),
    ("list + doubling in a loop", doubling("[1]", "ns.v + ns.v"), VALUE),
    ("% doubling in a loop", doubling("'x'", "'%s%s' % (ns.v, ns.v)"), VALUE),
    ("format doubling in a loop", doubling("'x'", "'{}{}'.format(ns.v, ns.v)"), VALUE),
    ("join doubling in a loop", doubling("'x'", "[ns.v, ns.v] | join"), VALUE),
    ("nested lists sharing their parts", doubling("[1]", "[ns.v, ns.v]"), VALUE),
    ("nested dicts sharing their parts", doubling("{}", "dict(a=ns.v, b=ns.v)"), VALUE),
    ("nested namespaces sharing their parts", doubling("1", "namespace(a=ns.v, b=ns.v)"), VALUE),
    ("macro doubling its argument", "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}"
                                    "{{ f('x', 100) }}", VALUE),
    ("a big base to a small power", "{{ (9 ** 999) ** 999 ** 999 }}", NUMBER),
    ("powers of powers", "{{ ((9 ** 999) ** 999) ** 999 }}", NUMBER),
    ("squaring in a loop", doubling("2 ** 1000", "ns.v * ns.v"), NUMBER),
    ("nested range loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", LOOPS),
    ("nested loops over a list", "{% set l = [0] * 100000 %}{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}",
     LOOPS),
    ("a recursive loop", "{% for x in [1] recursive %}{% if loop.depth < 4 %}{{ loop(range(10000)) }}{% endif %}"
                         "{% endfor %}", LOOPS),
    ("lipsum", "{{ lipsum(10000000) }}", LOOPS),
    ("lipsum with long paragraphs", "{{ lipsum(1, max=10000000) }}", VALUE),
    ("the slice filter", "{{ range(10) | slice(3000000000) | list }}", LOOPS),
    ("the indent filter", "{{ 'x\ny' | indent(3000000000) }}", VALUE),
    ("the indent filter with text", "{% set m = 'x\n' * 500000 %}{{ (m ~ m) | indent('    ' * 10) }}", VALUE),
    ("the center filter", "{{ 'x' | center(3000000000) }}", VALUE),
    ("the wordwrap filter's long word", "{{ ('abcdefgh' * 125000) | wordwrap(1) }}", VALUE),
    ("the wordwrap filter's wrapstring", "{{ ('a ' * 500000) | wordwrap(1, wrapstring='\n' * 1000) }}", VALUE),
    ("the format filter", "{{ '%3000000000s' | format('x') }}", VALUE),
    ("the format filter, many fields", "{{ ('%s' * 100) | format(*(['x' * 1000000] * 100)) }}", VALUE),
    ("% with a width", "{{ '%3000000000s' % 'x' }}", VALUE),
    ("% with a precision", "{{ '%.100000000f' % 1.5 }}", VALUE),
    ("str.format with a precision", "{{ '{:.100000000f}'.format(1.5) }}", VALUE),
    ("% with a * width", "{{ '%*s' % (3000000000, 'x') }}", VALUE),
    ("% naming one field many times", "{{ ('%(a)s' * 100) % {'a': 'x' * 1000000} }}", VALUE),
    ("the replace filter", "{{ ('x' * 1000000) | replace('x', 'y' * 1000) }}", VALUE),
    ("the replace filter with a huge count", "{{ ('x' * 1000000) | replace('', 'y' * 1000, 3000000000) }}", VALUE),
    ("the join filter of a range", "{{ range(100000) | join('x' * 100) }}", VALUE),
    ("the join filter of shared parts", "{{ (['x' * 1000000] * 100) | join }}", VALUE),
    ("the batch filter", "{{ range(10) | batch(3000000000, 'x') | list }}", VALUE),
    ("the urlize filter", MEGA + "{{ ('www.a.co ' * 1000) | urlize(target=m) }}", VALUE),
    ("the pprint filter", "{% set ns = namespace(v=[0] * 1000000) %}{% for i in range(200) %}"
                          "{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v | pprint }}", VALUE),
    ("repeating a list of lists", "{{ ([['x' * 1000] * 1000] * 1000) | string }}", VALUE),
    ("list(range()) printed", "{{ [range(100000) | list] * 100 }}", VALUE),
    ("the sum filter of lists", "{% set l = [0] * 1000 %}{{ ([l, l, l, l, l, l, l, l, l, l] * 500) | sum(start=[]) }}", VALUE),
    ("a dict of shared values", "{{ dict.fromkeys(range(100000), 'x' * 1000) }}", VALUE),
    ("a block's text", "{% set x %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}", VALUE),
    ("a filter block", "{% filter upper %}{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}{% endfilter %}",
     VALUE),
    ("a macro's text", "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}{% endmacro %}"
                       "{{ m() }}", VALUE),
    ("the output", "{% for i in range(1000) %}{{ 'x' * 10000 }}{% endfor %}", OUTPUT),
    ("many big values kept", MEGA + "".join(f"{{% set a{i} = m ~ m ~ m %}}" for i in range(1000)), BUILT),
    ("many big values in one list", "{{ range(100000) | map('center', 10000) | list | length }}", BUILT),
]


@pytest.mark.parametrize(("source", "bound"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_a_template_cannot_build_gigabytes_or_loop_for_hours(source: str, bound: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(source, HERE).render({})
    assert str(info.value).startswith("flow.yaml:7:18: "), info.value
    assert bound in str(info.value)
    assert info.value.location == HERE


@pytest.mark.parametrize("source", [
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% set l = range(100000) | list %}{{ range(100000) | select('in', l) | list | length }}",
], ids=["exponential macro recursion", "a test over a long list, item by item"])
def test_work_no_other_bound_sees_stops_at_the_deadline(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_budget, "LIMITS", TemplateLimits(seconds=0.5))
    with pytest.raises(TemplateError, match="the template ran for over 0.5 s, the limit for one rendering"):
        Template(source, HERE).render({})


BIG = "x" * 1_000_000
SHARED = {"inputs": {"bomb": [BIG] * 15_000}}  # what 15,000 YAML aliases of one string give a template


@pytest.mark.parametrize("source", [
    "{{ inputs.bomb }}", "{{ inputs.bomb | string }}", "{{ inputs.bomb | upper }}", "{{ inputs.bomb ~ '' }}",
    "{{ '%s' % (inputs.bomb,) }}", "{{ '{}'.format(inputs.bomb) }}", "{{ inputs.bomb | join }}",
    "{{ inputs.bomb | tojson }}", "{{ [inputs.bomb] }}", "{{ inputs.bomb + [] }}", "{{ inputs.bomb | pprint }}",
])
def test_a_value_with_shared_parts_is_measured_before_it_is_printed(source: str) -> None:
    with pytest.raises(TemplateError, match=VALUE):
        Template(source, HERE).render(SHARED)


def test_a_value_with_shared_parts_can_still_be_counted_and_walked() -> None:
    source = "{{ inputs.bomb | length }} {{ inputs.bomb[0] | length }} {{ inputs.bomb | first | length }}"
    assert Template(source, HERE).render(SHARED) == "15000 1000000 1000000"


def test_a_value_holding_itself_prints_as_python_prints_it() -> None:
    template = Template("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}", HERE)
    assert template.render({}) == "<Namespace {'a': 1, 'me': <Namespace {...}>}>"


def test_limits_are_per_rendering() -> None:
    template = Template("{% for i in range(600) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
                        "{{ 'x' * 3000000 }}", HERE)
    for _ in range(3):  # each rendering starts afresh: 600,000 iterations and 3M characters every time
        assert len(template.render({})) == 3_000_000


def _jinja() -> ImmutableSandboxedEnvironment:
    """Plain Jinja, set up as flowrunner sets up its sandbox, without the bounds."""
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    return env


CONTEXT: dict[str, Any] = {
    "inputs": {"question": "Why?", "n": 3, "text": "one two three four five six seven eight nine ten " * 20,
               "products": [{"name": f"item {i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(200)],
               "tree": [{"name": "a", "children": [{"name": "b", "children": []}]}]},
    "steps": {"first": {"content": "Because.", "json": {"items": [1, 2], "nested": {"deep": [{"x": None}]}}}},
}
ORDINARY = [
    "{{ inputs.question }} {{ steps.first.content }} {{ steps['first'].json | tojson }}",
    "{% for p in inputs.products %}{{ loop.index }}/{{ loop.length }} {{ p.name | upper }}: {{ '%.2f' % p.price }}"
    "{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for p in inputs.products if p.price > 100 %}{{ p.name }}{{ loop.cycle(';', ',') }}{% else %}none{% endfor %}",
    "{% for a, b in steps.first.json | dictsort %}{{ a }}={{ b }} {% endfor %}",
    "{% for item in inputs.tree recursive %}{{ item.name }}({{ loop(item.children) }}){% endfor %}",
    "{{ inputs.products | map(attribute='name') | join(', ') }} {{ inputs.products | join('|', attribute='price') }}",
    "{{ inputs.products | map(attribute='tags') | sum(start=[]) | length }} {{ [1, 2, 3] | sum }}",
    "{{ inputs.text | wordwrap(40) }}|{{ inputs.text | truncate(30) }}|{{ inputs.text | indent(2, first=True) }}",
    "{{ 'x' | center(9) }}|{{ 'x'.ljust(5) }}|{{ '7'.zfill(3) }}|{{ 'a\tb'.expandtabs(4) }}",
    "{{ inputs.text | replace('o', '0') }} {{ inputs.text.replace('e', 'E', 3) }} {{ '-'.join(['a', 'b']) }}",
    "{{ '%s and %s' % ('a', 'b') }} {{ '%(a)05d' % {'a': 42} }} {{ '%-6s|' | format('ab') }} {{ '%*d' % (5, 3) }}",
    "{{ '{} {:>8.3f} {x}'.format(1, 2.5, x='y') }} {{ '{a:{w}}|'.format_map({'a': 'b', 'w': 4}) }}",
    "{{ steps.first.json | tojson(indent=2) }} {{ steps.first.json | pprint }} {{ inputs.tree | tojson }}",
    "{% set ns = namespace(total=0, names=[]) %}{% for p in inputs.products %}{% set ns.total = ns.total + p.price %}"
    "{% set ns.names = ns.names + [p.name] %}{% endfor %}{{ ns.total }} {{ ns.names | length }}",
    "{% set ns = namespace(s='') %}{% for i in range(300) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}",
    "{% macro row(p, sep='; ') %}{{ p.name }}{{ sep }}{{ caller() }}{% endmacro %}"
    "{% macro plain(p) %}<{{ p.name }}>{% endmacro %}"
    "{% for p in inputs.products[:5] %}{% call row(p) %}*{% endcall %}{% endfor %}{{ plain({'name': 'z'}) }}",
    "{% set block %}{% for i in range(3) %}[{{ i }}]{% endfor %}{% endset %}{{ block }}"
    "{% filter upper %}{{ inputs.question }}{% endfilter %}",
    "{{ range(10) | batch(3, 0) | list }} {{ range(10) | slice(3) | list }} {{ range(5) | list | reverse | list }}",
    "{{ [3, 1, 2] | sort }} {{ ['a', 'b', 'a'] | unique | list }} {{ inputs.products | groupby('price') | length }}",
    "{{ 2 ** 100 }} {{ 3 * 'ab' }} {{ [0] * 3 }} {{ (1, 2) + (3,) }} {{ 'a' ~ 1 ~ none }} {{ 10 // 3 }} {{ 7 % 3 }}",
    "{{ dict(a=1, b=[1, 2]) }} {{ {'k': (1, 2)} }} {{ [1, [2, [3]]] }} {{ range(3) }} {{ 12345678901234567890 }}",
    "{% autoescape true %}{{ '<b>' ~ inputs.question }}{{ ['<i>'] | join }}{% endautoescape %}{{ '<b>' ~ 1 }}",
    "{{ 'a.co and b@c.de' | urlize }} {{ {'a': '1 2'} | urlencode }} {{ {'class': 'x'} | xmlattr }} {{ '<x>' | e }}",
    "{% for x in steps.first.json.nested.deep %}{{ x.x is none }}{% endfor %} {{ inputs.n is divisibleby 3 }}",
    "{{ (1).to_bytes(2, 'big') }} {{ 'abc'.translate({97: 'AA'}) }} {{ 'x'.encode().center(5) }}",
]


@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_templates_render_as_jinja_renders_them(source: str) -> None:
    assert Template(source, HERE).render(CONTEXT) == _jinja().from_string(source).render(CONTEXT)


def test_lipsum_still_works() -> None:
    assert Template("{{ lipsum(2, html=False, min=5, max=10) }}", HERE).render({}).count("\n\n") == 1
