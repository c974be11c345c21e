"""Jinja templates for messages and outputs, rendered in a sandbox.

A flow file is data from whoever wrote it: templates run in Jinja's immutable sandbox, so
`{{ ''.__class__.__mro__ }}` and friends are refused, and with StrictUndefined a misspelt name is
an error that names the template's place in the file instead of an empty string.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Mapping

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ._exceptions import Location, Problem, TemplateError


_MAX_RESULT = 1_000_000  # items or characters one `*` may build
_MAX_EXPONENT = 1_000


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus limits on `*` and `**`: `{{ 'x' * 10**10 }}` must not eat the memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is over the limit of {_MAX_EXPONENT}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > _MAX_RESULT:
                    raise SecurityError(f"repetition would build {len(seq) * count} items, over the limit of {_MAX_RESULT}")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    return env


def _static_text(ast: nodes.Template) -> str | None:
    """What a template without any expression or statement renders as (its text, which it is every time: a
    system prompt, say), so that it is not rendered again per request; None for any other template."""
    text = []
    for node in ast.body:
        if not isinstance(node, nodes.Output):
            return None
        for part in node.nodes:
            if not isinstance(part, nodes.TemplateData):
                return None
            text.append(part.data)
    return "".join(text)


def global_names() -> frozenset[str]:
    """Names every template can use besides the flow's own variables (`range`, `namespace`, ...)."""
    return frozenset(_environment().globals)


class Template:
    """One compiled template, with the place in the flow file it came from."""

    def __init__(self, source: str, location: Location | None):
        self.source = source
        self.location = location
        env = _environment()
        self._ast = env.parse(source)  # raises jinja2.TemplateSyntaxError
        self._template = env.from_string(self._ast)
        self._text = _static_text(self._ast)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with the given variables; every failure becomes a located TemplateError."""
        if self._text is not None:
            return self._text
        try:
            return self._template.render(context)
        except SecurityError as exc:
            raise TemplateError(f"refused by the template sandbox: {exc}", self.location) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{exc} (the template refers to something that has no value)", self.location) from None
        except TemplateError:
            raise
        except Exception as exc:  # a filter or test failing on the user's data
            raise TemplateError(f"{type(exc).__name__}: {exc}", self.location) from None

    def references(self, root: str) -> list[str]:
        """Names used as `root.NAME` or `root['NAME']` (e.g. the step ids a template reads)."""
        found: list[str] = []
        for node in self._ast.find_all((nodes.Getattr, nodes.Getitem)):
            if not isinstance(node, (nodes.Getattr, nodes.Getitem)):  # never: find_all yields only these
                continue
            target = node.node
            if not (isinstance(target, nodes.Name) and target.name == root):
                continue
            if isinstance(node, nodes.Getattr):
                found.append(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.append(node.arg.value)
        return found

    def attributes(self, root: str) -> list[tuple[str, str]]:
        """`(NAME, ATTR)` for each `root.NAME.ATTR` (or `root['NAME']['ATTR']`): what a template reads of a step."""
        found: list[tuple[str, str]] = []
        for node in self._ast.find_all((nodes.Getattr, nodes.Getitem)):
            if not isinstance(node, (nodes.Getattr, nodes.Getitem)):  # never: find_all yields only these
                continue
            inner = node.node
            if not isinstance(inner, (nodes.Getattr, nodes.Getitem)):
                continue
            names = [_key(inner), _key(node)]
            if isinstance(inner.node, nodes.Name) and inner.node.name == root and None not in names:
                found.append((str(names[0]), str(names[1])))
        return found

    def names(self) -> set[str]:
        """Top-level variables the template reads (`inputs`, `steps`, ...)."""
        from jinja2 import meta

        return set(meta.find_undeclared_variables(self._ast))

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """The name `.NAME` or `['NAME']` reads; None for a computed key (`[i]`)."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None


def compile_template(source: str, location: Location | None) -> Template | Problem:
    """Compile, or say where the syntax error is (line offsets added to the node's place)."""
    try:
        return Template(source, location)
    except jinja2.TemplateSyntaxError as exc:
        where = location
        if location is not None and exc.lineno and exc.lineno > 1:
            where = Location(location.file, location.line + exc.lineno - 1, 1)
        return Problem(where, f"template syntax error: {exc.message}",
                       "Jinja syntax: {{ expression }}, {% if %}...{% endif %}")


def missing(hint: str) -> Any:
    """A value that fails with `hint` as soon as a template uses it (e.g. `.json` of non-JSON content)."""
    return jinja2.StrictUndefined(hint=hint)
