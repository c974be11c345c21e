"""Jinja templates for messages and outputs, rendered in a sandbox.

A flow file is data from whoever wrote it: templates run in a bounded Jinja sandbox (`_sandbox.py`),
so `{{ ''.__class__.__mro__ }}` and friends are refused, `{{ 'x' * 10**10 }}` or loops in loops stop
at a limit (`_budget.TemplateLimits`), and with StrictUndefined a misspelt name is an error that names
the template's place in the file instead of an empty string. Each distinct source is compiled once,
however many places use it: YAML aliases can repeat one big template thousands of times.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError

from ._budget import OverLimit
from ._exceptions import Location, Problem, TemplateError
from ._sandbox import environment, render

_CACHE_CHARS = 20_000_000  # template sources kept compiled, in characters (a flow file is at most 5 MB)
_MAX_TOKENS = 20_000  # the parts of one template; compiling takes about 2.5 KB and 20 microseconds each


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
    return frozenset(environment().globals)


class _TooComplex(jinja2.TemplateSyntaxError):
    """A template too long or too deeply nested to compile within bounds."""


_OPENING, _CLOSING = {"lparen", "lbracket", "lbrace"}, {"rparen", "rbracket", "rbrace"}
_BLOCKS = {"if", "for", "macro", "call", "filter", "with", "block", "autoescape"}
# What chains one expression into a deeper tree: `a.b.c`, `x | f | g`, `a + b + c`, `a and b or c`.
_CHAINING = {"dot", "pipe", "add", "sub", "mul", "div", "floordiv", "mod", "pow", "tilde", "lbracket"}
_CHAINING_WORDS = {"and", "or", "not", "if", "else", "is", "in"}
_MAX_NESTING = 40
"""How deep brackets, and blocks (`if`, `for`...), may nest in a template."""
_MAX_CHAIN = 100
"""How many links (`.`, `|`, operators) one expression may chain: each is a level of Python's compiler."""


def _check_shape(tokens: Iterable[Any]) -> None:
    """_TooComplex for a template with more than `_MAX_TOKENS` parts, or nesting or chaining past the bounds
    above: counted here, so that the answer does not depend on how deep Python's stack happens to be."""
    parts = brackets = blocks = chain = 0
    previous = ""
    for token in tokens:
        parts += 1
        kind, value = token.type, token.value
        if kind in ("variable_begin", "block_begin"):
            chain = 0
        elif kind in _CHAINING or (kind == "name" and value in _CHAINING_WORDS and previous != "block_begin"):
            chain += 1
        if kind in _OPENING:
            brackets += 1
        elif kind in _CLOSING:
            brackets = max(0, brackets - 1)
        elif kind == "name" and previous == "block_begin":
            if value in _BLOCKS:
                blocks += 1
            elif value.startswith("end"):
                blocks = max(0, blocks - 1)
        if brackets > _MAX_NESTING or blocks > _MAX_NESTING:
            raise _TooComplex(f"it nests more than {_MAX_NESTING} levels deep", token.lineno)
        if chain > _MAX_CHAIN:
            raise _TooComplex(f"one expression chains more than {_MAX_CHAIN} parts (`.`, `|`, operators)",
                              token.lineno)
        previous = kind if kind in ("block_begin", "variable_begin") else str(value) if kind == "name" else kind
    if parts > _MAX_TOKENS:
        raise _TooComplex(f"it has over {_MAX_TOKENS:,} parts (names, operators, tags, pieces of text)", 1)


class _Compiled:
    """One template source, compiled, with what it reads worked out once."""

    def __init__(self, source: str):
        env = environment()
        _check_shape(itertools.islice(env.lexer.tokenize(source), _MAX_TOKENS + 1))
        try:
            self.ast = env.parse(source)  # raises jinja2.TemplateSyntaxError
            self.template = env.from_string(self.ast)
        except (RecursionError, SyntaxError):  # Jinja's parser and Python's compiler limit how deep code nests
            raise _TooComplex("it nests too deeply to compile", 1) from None
        self.text = _static_text(self.ast)  # a template with nothing to render: its text, every time
        self._names: frozenset[str] | None = None
        self._references: dict[str, tuple[str, ...]] = {}

    def names(self) -> frozenset[str]:
        if self._names is None:
            from jinja2 import meta

            self._names = frozenset(meta.find_undeclared_variables(self.ast))
        return self._names

    def references(self, root: str) -> tuple[str, ...]:
        if root not in self._references:
            self._references[root] = tuple(dict.fromkeys(_references(self.ast, root)))
        return self._references[root]


class _SyntaxError:
    """A source that failed to compile, remembered as what compile_template reports."""

    def __init__(self, exc: jinja2.TemplateSyntaxError):
        self.kind = type(exc)
        self.message = exc.message
        self.lineno = exc.lineno

    def exception(self) -> jinja2.TemplateSyntaxError:
        return self.kind(self.message or "", self.lineno)


class _Cache:
    """Compiled sources by source text, the least recently used dropped past `_CACHE_CHARS` characters."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Compiled | _SyntaxError] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, source: str) -> _Compiled | _SyntaxError:
        with self._lock:
            found = self._entries.get(source)
            if found is not None:
                self._entries.move_to_end(source)
                return found
        try:
            made: _Compiled | _SyntaxError = _Compiled(source)
        except jinja2.TemplateSyntaxError as exc:
            made = _SyntaxError(exc)
        with self._lock:
            if source not in self._entries:
                self._entries[source] = made
                self._chars += len(source)
            while self._chars > _CACHE_CHARS and len(self._entries) > 1:
                dropped, _ = self._entries.popitem(last=False)
                self._chars -= len(dropped)
        return made


_cache = _Cache()


def _compile(source: str) -> _Compiled:
    compiled = _cache.get(source)
    if isinstance(compiled, _SyntaxError):
        raise compiled.exception()
    return compiled


class Template:
    """One compiled template, with the place in the flow file it came from."""

    def __init__(self, source: str, location: Location | None):
        self.source = source
        self.location = location
        self._compiled = _compile(source)  # raises jinja2.TemplateSyntaxError

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with the given variables; every failure becomes a located TemplateError."""
        if self._compiled.text is not None:
            return self._compiled.text
        try:
            return render(self._compiled.template, context)
        except OverLimit as exc:
            raise TemplateError(str(exc), self.location) from None
        except SecurityError as exc:
            raise TemplateError(f"refused by the template sandbox: {exc}", self.location) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{exc} (the template refers to something that has no value)", self.location) from None
        except TemplateError:
            raise
        except Exception as exc:  # a filter or test failing on the user's data
            raise TemplateError(f"{type(exc).__name__}: {exc}", self.location) from None

    def references(self, root: str) -> list[str]:
        """Names used as `root.NAME` or `root['NAME']` (e.g. the step ids a template reads), each once."""
        return list(self._compiled.references(root))

    def attributes(self, root: str) -> list[tuple[str, str]]:
        """`(NAME, ATTR)` for each `root.NAME.ATTR` (or `root['NAME']['ATTR']`): what a template reads of a step."""
        found: list[tuple[str, str]] = []
        for node in self._compiled.ast.find_all((nodes.Getattr, nodes.Getitem)):
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
        return set(self._compiled.names())

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
    except _TooComplex as exc:
        return Problem(location, f"template too complex: {exc.message}", "split it into smaller templates")
    except jinja2.TemplateSyntaxError as exc:
        where = location
        if location is not None and exc.lineno and exc.lineno > 1:
            where = Location(location.file, location.line + exc.lineno - 1, 1)
        return Problem(where, f"template syntax error: {exc.message}",
                       "Jinja syntax: {{ expression }}, {% if %}...{% endif %}")


def _references(ast: nodes.Template, root: str) -> list[str]:
    found: list[str] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
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


def missing(hint: str) -> Any:
    """A value that fails with `hint` as soon as a template uses it (e.g. `.json` of non-JSON content)."""
    return jinja2.StrictUndefined(hint=hint)
