"""Jinja's immutable sandbox, bounded in size and in work (the bounds: `_budget.TemplateLimits`).

Jinja's ImmutableSandboxedEnvironment keeps templates away from Python's internals, but not from
`{{ 'x'.center(3000000000) }}` or loops in loops. Here every hook the sandbox has (attribute and item
access, calls, the `*`, `**`, `+` and `%` operators, `str.format`, filters, tests) spends from the
rendering's budget, and the code generator adds hooks where Jinja has none: `~`, list, tuple and dict
literals, `{% for %}` loops and the buffers of blocks. Filters and `str` methods that take a width or
a count are checked before they run; what any other filter or call returns is counted after.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import string
from time import monotonic
from collections import abc
from typing import Any, Callable, Iterable, Mapping, TypeVar, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from . import _budget
from ._budget import Budget, Buffer, Counted, NotRendering, OverLimit, current, current_or_none

T = TypeVar("T")

_NUMBER_TEXT = 330  # the most a number adds to a format field: a float with `f` prints 309 digits and more
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\S+")
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)
_FORMATTER = string.Formatter()
_LIPSUM = inspect.signature(generate_lorem_ipsum)
# Filters that print their arguments (`str()`): a collection is measured before it is printed.
_PRINTING = frozenset({"capitalize", "e", "escape", "filesizeformat", "forceescape", "lower", "safe", "string",
                       "striptags", "title", "trim", "truncate", "upper", "urlencode", "wordcount", "xmlattr"})


# -- what a format, a filter or a method will build, worked out before it runs ---------------------------

def _width(digits: str | None) -> int:
    """A width or precision written in a format (`*` ones are counted apart)."""
    if digits is None or digits == "*":
        return 0
    return int(digits) if len(digits) < 19 else 10**19  # int() of 5,000 digits would be refused


def _widest(budget: Budget, values: Iterable[Any], what: str) -> tuple[int, int]:
    """(the longest any value prints as, the biggest whole number) among a format's arguments."""
    widest = star = 0
    for value in values:
        widest = max(widest, budget.text_size(value, what))
        if isinstance(value, int):
            star = max(star, value)
    return widest, star


def _percent_size(budget: Budget, fmt: str | bytes, args: Any) -> int:
    """The most `fmt % args` can build: each field as wide as the widest argument, plus its width."""
    if isinstance(args, tuple):
        widest, star = _widest(budget, args, "`%`")
    elif not isinstance(args, (str, int, float)) and isinstance(args, abc.Mapping):
        widest, star = _widest(budget, [args, *args.values()], "`%`")  # `%s` prints the whole mapping
    else:
        widest, star = _widest(budget, (args,), "`%`")
    fields, widths, stars = _percent_fields(fmt) if len(fmt) <= 256 else _percent_fields.__wrapped__(fmt)
    return len(fmt) + fields * (widest + _NUMBER_TEXT) + widths + stars * max(star, 0)


@functools.lru_cache(maxsize=256)
def _percent_fields(fmt: str | bytes) -> tuple[int, int, int]:
    """(fields, the sum of their written widths and precisions, how many are `*`) in a %-format."""
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    fields = widths = stars = 0
    for field in _PERCENT_FIELD.finditer(text):
        if field.group(3) != "%":
            fields += 1
            for part in field.group(1, 2):
                stars += part == "*"
                widths += _width(part)
    return fields, widths, stars


def _format_size(budget: Budget, fmt: str, values: list[Any]) -> int:
    """The most `fmt.format(...)` can build; a nested width (`{:{w}}`) counts as the biggest number given."""
    widest, star = _widest(budget, values, "str.format()")
    fields, widths, stars = _format_fields(fmt) if len(fmt) <= 256 else _format_fields.__wrapped__(fmt)
    return len(fmt) + fields * (widest + _NUMBER_TEXT) + widths + stars * max(star, 0)


@functools.lru_cache(maxsize=256)
def _format_fields(fmt: str) -> tuple[int, int, int]:
    """(fields, the sum of their written widths and precisions, how many have a nested one) in a str.format."""
    fields = widths = stars = 0
    for _, field, spec, _ in _FORMATTER.parse(fmt):
        if field is not None:
            fields += 1
            if spec and "{" in spec:
                stars += 1
            elif spec:
                widths += sum(_width(digits) for digits in _DIGITS.findall(spec))
    return fields, widths, stars


def _replaced_size(text: str | bytes, old: Any, new: Any, count: Any) -> int | None:
    if not isinstance(old, (str, bytes)) or not isinstance(new, (str, bytes)):
        return None  # the call fails on its own
    matches = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        matches = min(matches, count)
    return len(text) + matches * max(len(new) - len(old), 0)


def _method_size(owner: str | bytes | int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """What a `str`, `bytes` or `int` method that takes a width or a count will build; None for the others."""
    if isinstance(owner, int):
        length = args[0] if args else kwargs.get("length", 1)
        return length if name == "to_bytes" and isinstance(length, int) else None
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        return max(len(owner), width) if isinstance(width, int) else None
    if name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        return len(owner) + tabs * max(tabsize, 0) if isinstance(tabsize, int) else None
    if name == "replace" and len(args) >= 2:
        return _replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    if name == "translate" and args:
        table = args[0]
        values = table.values() if isinstance(table, abc.Mapping) else table if isinstance(table, (list, tuple)) else ()
        return len(owner) * max((len(v) for v in values if isinstance(v, (str, bytes))), default=1)
    return None


def _join_items(budget: Budget, what: str, items: Iterable[Any], separator: str | bytes) -> list[Any]:
    """The items to join, checked as they come (a generator may be long) against the size of the result."""
    kept, size, limit = [], 0, budget.max_value
    for item in items:
        size += (len(item) if type(item) is str else budget.text_size(item, what)) + len(separator)
        if size > limit:
            budget.check_size(size, what)
        kept.append(item)
    return kept


Estimate = Callable[..., int]  # (budget, what, the filter's arguments) -> characters or items it will build


def _center(budget: Budget, what: str, value: Any, width: Any = 80) -> int:
    return max(budget.text_size(value, what), width if isinstance(width, int) else 0)


def _indent(budget: Budget, what: str, s: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = budget.text(s, what)
    pad = len(width) if isinstance(width, str) else max(width, 0) if isinstance(width, int) else 0
    return len(text) + (text.count("\n") + 1) * pad


def _wordwrap(budget: Budget, what: str, s: Any, width: Any = 79, break_long_words: Any = True,
              wrapstring: Any = None, *_: Any, **__: Any) -> int:
    text = budget.text(s, what)
    columns: int = max(width, 1) if isinstance(width, int) else 1
    lines = len(text) // columns + text.count("\n") + 1
    newline = len(wrapstring) if isinstance(wrapstring, str) else 1
    copies = 0  # textwrap cuts a long word one line at a time, copying the rest of it each time
    if break_long_words and columns < len(text):
        lengths = (word.end() - word.start() for word in _WORD.finditer(text))
        copies = sum(length * length // columns for length in lengths if length > columns)
    return len(text) + lines * newline + copies


def _replace(budget: Budget, what: str, s: Any, old: Any, new: Any, count: Any = None) -> int:
    text = budget.text(s, what)
    return _replaced_size(text, budget.text(old, what), budget.text(new, what), -1 if count is None else count) or 0


def _format(budget: Budget, what: str, value: Any, *args: Any, **kwargs: Any) -> int:
    return _percent_size(budget, budget.text(value, what), kwargs or args)


def _urlize(budget: Budget, what: str, value: Any, trim_url_limit: Any = None, nofollow: Any = False,
            target: Any = None, rel: Any = None, *_: Any, **__: Any) -> int:
    text = budget.text(value, what)
    markup = 60 + len(budget.text(target or "", what)) + len(budget.text(rel or "", what))  # <a href=...>...</a>
    links = sum(len(word) + markup for word in text.split() if any(mark in word for mark in ".@:"))
    escaped = 4 * sum(text.count(mark) for mark in "<>&'\"")  # & -> &amp; ...
    return len(text) + escaped + links


def _batch(budget: Budget, what: str, value: Any, linecount: Any, fill_with: Any = None) -> int:
    return linecount if fill_with is not None and isinstance(linecount, int) else 0


def _slice(budget: Budget, what: str, value: Any, slices: Any, fill_with: Any = None) -> int:
    if isinstance(slices, int):
        budget.iterate(max(slices, 0))  # one list per slice, however few items there are
    return 0


def _tojson_size(budget: Budget, what: str, value: Any, indent: Any = None) -> int:
    size, depth = budget.shape(value, what)
    width = len(indent) if isinstance(indent, str) else max(indent, 0) if isinstance(indent, int) else 0
    return max(size, width * depth)  # indented, the deepest line's indent is one piece; _tojson counts the rest


def _pprint(budget: Budget, what: str, value: Any) -> int:
    size, depth = budget.shape(value, what)
    return size * max(depth, 1)  # pformat prints each nested level again to see if it fits the line


_ESTIMATES: dict[str, Estimate] = {
    "batch": _batch, "center": _center, "format": _format, "indent": _indent, "pprint": _pprint,
    "replace": _replace, "slice": _slice, "tojson": _tojson_size, "urlize": _urlize, "wordwrap": _wordwrap,
}


# -- filters and globals replaced -----------------------------------------------------------------------

def _tojson(value: Any, indent: int | str | None = None) -> str:
    """JSON as the flow's messages want it: not HTML-escaped (Jinja's own tojson is for HTML pages)."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False)
    budget = current()  # indented, every line adds its indent: counted piece by piece
    parts, size = [], 0
    for part in json.JSONEncoder(indent=indent, ensure_ascii=False).iterencode(value):
        size += len(part)
        if size > budget.max_value:
            budget.check_size(size, "the tojson filter")
        parts.append(part)
    return "".join(parts)


@jinja2.pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: Any = "", attribute: str | int | None = None) -> str:
    budget = current()
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    separator = budget.text(d, "the join filter")
    return sync_do_join(eval_ctx, _join_items(budget, "the join filter", value, separator), separator)


@jinja2.pass_environment
def _sum(environment: jinja2.Environment, iterable: Iterable[Any], attribute: str | int | None = None,
         start: Any = 0) -> Any:
    """Jinja's sum, but `sum(start=[])` joins the lists in one pass instead of copying the total each time."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    if not isinstance(start, (list, tuple)):
        return sum(iterable, start)
    budget = current()
    kind = list if isinstance(start, list) else tuple
    joined = list(start)
    for item in iterable:
        if not isinstance(item, kind):
            raise TypeError(f'can only concatenate {kind.__name__} (not "{type(item).__name__}") to {kind.__name__}')
        joined.extend(item)
        budget.check_size(len(joined), "the sum filter")
    return joined if kind is list else tuple(joined)


def _lipsum(*args: Any, **kwargs: Any) -> str:
    call = _LIPSUM.bind(*args, **kwargs)
    call.apply_defaults()
    paragraphs, words = call.arguments["n"], call.arguments["max"]
    if isinstance(paragraphs, int) and isinstance(words, int) and paragraphs > 0:
        budget = current()
        budget.iterate(paragraphs)
        budget.check_size(paragraphs * (max(words, 0) * 12 + 20), "lipsum()")
    return generate_lorem_ipsum(*args, **kwargs)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, spending from the budget: checked before it runs if it can say what it will build."""
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0  # the context or environment Jinja passes first
    what = f"the {name} filter"
    estimate = _ESTIMATES.get(name)
    printing = name in _PRINTING

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = current_or_none()
        if budget is None:  # Jinja folding constants while it compiles: the filter runs when it renders
            raise NotRendering(what)
        if monotonic() > budget.deadline:
            budget.tick()
        if estimate is not None:
            budget.check_size(estimate(budget, what, *args[skip:], **kwargs), what)
        elif printing:
            for arg in (*args[skip:], *kwargs.values()):
                if type(arg) is not str:
                    budget.text_size(arg, what)
        result = func(*args, **kwargs)
        if type(result) is str:
            budget.allocate(len(result), what)
            return result
        return budget.account(result, what)

    return bounded


def _ticking(test: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(test)
    def ticking(*args: Any, **kwargs: Any) -> Any:
        budget = current_or_none()
        if budget is not None and monotonic() > budget.deadline:
            budget.tick()
        return test(*args, **kwargs)

    return ticking


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` passes here before it is printed: a collection is measured first."""
    if not isinstance(value, str):
        budget = current_or_none()
        if budget is not None:
            budget.measure(value, "printing a value")
    return value


# -- the environment --------------------------------------------------------------------------------------

class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, calling the sandbox where Jinja has no hook: `~`, literals, loops, blocks."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        iterable = node.iter  # for the time of writing the loop: `environment.loop_items(iterable)`
        node.iter = nodes.Call(nodes.EnvironmentAttribute("loop_items"), [iterable], [], None, None,
                               lineno=iterable.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = iterable

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        escaping = "context.eval_ctx.autoescape" if frame.eval_ctx.volatile else str(bool(frame.eval_ctx.autoescape))
        self.write(f"), {escaping})")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.built(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.built(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # a target: `{% for a, b in ... %}`
            super().visit_Tuple(node, frame)
            return
        self.write("environment.built(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.block_buffer()")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, bounded: see the module's docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self, **options: Any):
        super().__init__(finalize=_finalize, **options)
        self.globals["lipsum"] = _lipsum
        self.filters.update(tojson=_tojson, join=_join, sum=_sum)
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}
        self.tests = {name: _ticking(cast(Callable[..., Any], test)) for name, test in self.tests.items()}

    # -- Jinja's sandbox hooks

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget = current_or_none()  # None while Jinja folds constants at compile time
        if budget is not None and monotonic() > budget.deadline:
            budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = current_or_none()
        if budget is not None and monotonic() > budget.deadline:
            budget.tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        if monotonic() > budget.deadline:
            budget.tick()
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (Counted(args[0], budget), *args[1:])
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, bytes)) and name == "join" and args:
            args = (_join_items(budget, "str.join()", args[0], owner), *args[1:])
        elif isinstance(owner, (str, bytes, int)):
            size = _method_size(owner, name, args, kwargs)
            if size is not None:
                budget.check_size(size, f"{type(owner).__name__}.{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(__obj, (Macro, LoopContext)):  # their text was counted as it was written
            return result
        return budget.account(result, f"{name or 'the call'}()")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        if monotonic() > budget.deadline:
            budget.tick()
        what = f"`{operator}`"
        if operator == "%" and isinstance(left, (str, bytes)):
            budget.check_size(_percent_size(budget, left, right), what)
            return budget.account(super().call_binop(context, operator, left, right), what)
        if operator == "+" and isinstance(left, (str, bytes)) and isinstance(right, (str, bytes)):
            budget.allocate(len(left) + len(right), what)
        elif operator == "+" and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            budget.check_size(budget.measure(left, what) + budget.measure(right, what), what)
            budget.allocate(len(left) + len(right), what)
        elif operator == "*":
            _check_repeat(budget, left, right)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            budget.number(left.bit_length() * right, what)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        fmt: str = value.__self__
        by_name = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            budget = current()
            mapping = args[0] if by_name and args and isinstance(args[0], abc.Mapping) else {}
            values = [*mapping.values()] if by_name else [*args, *kwargs.values()]
            budget.check_size(_format_size(budget, fmt, values), f"str.{value.__name__}()")
            return formatter(*args, **kwargs)

        return functools.update_wrapper(bounded, formatter)

    # -- called by the code _CodeGenerator writes

    def bounded_concat(self, values: tuple[Any, ...], autoescape: bool) -> str:
        budget = current()
        budget.allocate(sum(budget.text_size(value, "`~`") for value in values), "`~`")
        return markup_join(values) if autoescape else str_join(values)

    def built(self, value: T) -> T:
        return current().account(value, "a list, tuple or dict")  # type: ignore[no-any-return]

    def loop_items(self, iterable: Iterable[Any]) -> Counted:
        return Counted(iterable, current())

    def block_buffer(self) -> Buffer:
        return Buffer(current())


def _check_repeat(budget: Budget, left: Any, right: Any) -> None:
    """`'x' * n`, `[x] * n` and `n * m`, before they are built."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int):
            count = max(count, 0)
            if isinstance(seq, (list, tuple)):
                budget.check_size(budget.measure(seq, "`*`") * count, "`*`")
            budget.allocate(len(seq) * count, "`*`")
            return
    if isinstance(left, int) and isinstance(right, int):
        budget.number(left.bit_length() + right.bit_length(), "`*`")


@functools.lru_cache(maxsize=1)
def environment() -> Sandbox:
    """The one environment every template is compiled in."""
    return Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render within a fresh budget, reading the output piece by piece so it stops at the output limit."""
    limits = _budget.LIMITS
    with Budget(limits):
        parts, size = [], 0
        for chunk in template.root_render_func(template.new_context(dict(context))):
            size += len(chunk)
            if size > limits.output:
                raise OverLimit(f"the template's output is over the limit of {limits.output:,} characters")
            parts.append(chunk)
        return "".join(parts)
