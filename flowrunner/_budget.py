"""What one rendering of a template may spend: output, memory, loop iterations, time.

A flow file is data from whoever wrote it, and so is every value its templates read (inputs, the
model's answers). The sandbox (`_sandbox.py`) asks the `Budget` of the rendering under way before it
builds anything big and reports what it built; past any of the `TemplateLimits` the Budget raises
`OverLimit`, whose message names the bound, and the Template turns it into a located TemplateError.
"""

from __future__ import annotations

from collections import abc
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import monotonic
from typing import Any, Iterable, Iterator

from jinja2.utils import Namespace


@dataclass(frozen=True)
class TemplateLimits:
    """The bounds on one rendering of one template (a message's content, an output)."""

    output: int = 4_000_000
    """Characters the template may output."""
    value: int = 4_000_000
    """Characters (or items) one value may hold, a collection counted as it would print."""
    built: int = 20_000_000
    """Characters (or items) the template may build in all, every intermediate value included."""
    iterations: int = 1_000_000
    """Loop iterations, nested loops and `slice`/`lipsum` counts included."""
    seconds: float = 10.0
    """Wall-clock time, checked at every attribute, call, operator, filter and loop step."""
    number_bits: int = 65_536
    """Bits in one whole number (`**` and `*` of integers)."""


LIMITS = TemplateLimits()


class OverLimit(Exception):
    """A rendering went past one of its TemplateLimits; the message names the bound."""


class NotRendering(Exception):
    """Raised by filters that Jinja tries on constants while compiling: they must run with a budget."""


_CURRENT: ContextVar[Budget | None] = ContextVar("flowrunner_template_render", default=None)
_MAX_KNOWN = 100_000  # collections whose size a rendering remembers before it forgets them all
_CYCLE = 5  # printed size of a collection inside itself: `[...]`

current_or_none = _CURRENT.get
"""The budget of the rendering under way on this thread, or None (Jinja folding constants while compiling)."""


def current() -> Budget:
    """The budget of the rendering under way on this thread."""
    budget = _CURRENT.get()
    if budget is None:
        raise NotRendering("templates spend from a budget only while they render")
    return budget


class Budget:
    """One rendering's budget: what it has built and iterated, and its deadline.

    The sandbox's hooks run for every attribute, call and loop step, so the checks they make
    (`deadline`, `iterate`, `allocate`) stay a comparison or two.
    """

    def __init__(self, limits: TemplateLimits):
        self.limits = limits
        self.deadline = monotonic() + limits.seconds
        self.max_value = limits.value
        self.built = 0
        self.iterations = 0
        # id -> (the collection, kept alive so its id stays its own; printed size, -1 while measured; depth)
        self._known: dict[int, tuple[Any, int, int]] = {}
        self._token: Token[Budget | None] | None = None

    def __enter__(self) -> Budget:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)

    def tick(self) -> None:
        """Fail past the deadline; the sandbox calls this at every step it sees."""
        if monotonic() > self.deadline:
            raise OverLimit(f"the template ran for over {self.limits.seconds:g} s, the limit for one rendering")

    def iterate(self, count: int = 1) -> None:
        """Count `count` loop iterations."""
        self.iterations += count
        if self.iterations > self.limits.iterations:
            raise OverLimit(f"the template's loops ran over {self.limits.iterations:,} iterations, "
                            "the limit for one rendering")
        self.tick()

    def check_size(self, size: int, what: str) -> None:
        """Fail if one value of `size` characters or items is too big."""
        if size > self.max_value:
            raise OverLimit(f"{what} would build {size:,} characters or items, "
                            f"over the limit of {self.max_value:,} for one value")

    def allocate(self, size: int, what: str) -> None:
        """Count a value about to be built (checked first), `size` characters or items."""
        if size > self.max_value:
            self.check_size(size, what)
        self.built += size
        if self.built > self.limits.built:
            raise OverLimit(f"the template built over {self.limits.built:,} characters or items in all, "
                            "the limit for one rendering")

    def number(self, bits: int, what: str) -> None:
        """Fail if a whole number of `bits` bits is too big."""
        if bits > self.limits.number_bits:
            raise OverLimit(f"{what} would make a number of {bits:,} bits, "
                            f"over the limit of {self.limits.number_bits:,}")

    def account(self, value: Any, what: str) -> Any:
        """Count a value an operation has just built (a string by its length, a collection by its items)."""
        if type(value) is str or isinstance(value, (str, bytes)):
            self.allocate(len(value), what)
        elif _leaf_size(value) is None:
            self.measure(value, what)
            self.allocate(len(value) if isinstance(value, abc.Sized) else 1, what)
        return value

    def text_size(self, value: Any, what: str) -> int:
        """Characters `str(value)` has, or about: collections are measured (and checked) before printing."""
        if type(value) is str:
            return len(value)
        leaf = _leaf_size(value)
        return leaf if leaf is not None else self.shape(value, what)[0]

    def text(self, value: Any, what: str) -> str:
        """`str(value)`, measured first."""
        if type(value) is str:
            return value
        self.measure(value, what)
        return str(value)

    def measure(self, value: Any, what: str) -> int:
        """Characters `value` prints as, about; a collection over the one-value limit fails."""
        return self.shape(value, what)[0]

    def shape(self, value: Any, what: str) -> tuple[int, int]:
        """(printed size, nesting depth) of a value.

        Shared parts count every time they appear, as printing would print them, so `[x, x]` built in a
        loop cannot double its way to a billion; each collection is walked once per rendering.
        """
        leaf = _leaf_size(value)
        if leaf is not None:
            return leaf, 0
        known = self._known.get(id(value))
        if known is not None and known[1] >= 0:
            return known[1], known[2]
        if len(self._known) > _MAX_KNOWN:
            self._known.clear()
        stack = [value]
        while stack:
            node = stack[-1]
            entry = self._known.get(id(node))
            if entry is None:  # first visit: measure the collections inside first
                self._known[id(node)] = (node, -1, 0)
                stack.extend(child for child in _children(node)
                             if _leaf_size(child) is None and id(child) not in self._known)
                continue
            stack.pop()
            if entry[1] < 0:  # second visit: everything inside is measured
                self._known[id(node)] = (node, *self._total(node, what))
        _, size, depth = self._known[id(value)]
        return size, depth

    def _total(self, node: Any, what: str) -> tuple[int, int]:
        self.tick()
        size, depth = 2, 1
        for child in _children(node):
            child_size = _leaf_size(child)
            if child_size is None:
                _, child_size, child_depth = self._known[id(child)]
                if child_size < 0:  # the collection holds itself
                    child_size, child_depth = _CYCLE, 0
                depth = max(depth, child_depth + 1)
            size += child_size + 2
            if size > self.limits.value:
                raise OverLimit(f"{what} would print a value of over {self.limits.value:,} characters, "
                                "the limit for one value")
        return size, depth


_COLLECTIONS = (list, tuple, dict, set, frozenset, Namespace)
_ABSTRACT_COLLECTIONS = (abc.Mapping, abc.Set, abc.KeysView, abc.ValuesView, abc.ItemsView)


def _leaf_size(value: Any) -> int | None:
    """Printed size of a value that is not a collection; None for a collection."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is int:
        return value.bit_length() // 3 + 5  # type: ignore[no-any-return]
    if kind is float or kind is bool or value is None:
        return 40
    if isinstance(value, _COLLECTIONS):
        return None
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, int):
        return value.bit_length() // 3 + 5
    if isinstance(value, (bytes, bytearray)):
        return len(value) + 3
    if isinstance(value, _ABSTRACT_COLLECTIONS):
        return None
    return 40  # a range, a macro, a generator...: a short repr


def _children(value: Any) -> Iterable[Any]:
    kind = type(value)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return value  # type: ignore[no-any-return]
    if kind is dict:
        return _flat_items(value)
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, (abc.KeysView, abc.ValuesView, abc.ItemsView)):
        value = getattr(value, "mapping", value)
    return _flat_items(value) if isinstance(value, abc.Mapping) else value


def _flat_items(mapping: abc.Mapping[Any, Any]) -> Iterator[Any]:
    for key, item in mapping.items():
        yield key
        yield item


class Counted:
    """A loop's iterable, counted item by item against the loop budget (and sized as the iterable is)."""

    __slots__ = ("_items", "_iterator", "_budget")

    def __init__(self, items: Iterable[Any], budget: Budget):
        self._items = items
        self._iterator = iter(items)
        self._budget = budget

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        budget = self._budget
        budget.iterations += 1
        if budget.iterations > budget.limits.iterations or monotonic() > budget.deadline:
            budget.iterate(0)
        return item

    def __len__(self) -> int:  # `loop.length`, `loop.last`: a TypeError for a generator, as before
        return len(self._items)  # type: ignore[arg-type]


class Buffer(list[str]):
    """The text of a block (a macro, `{% set %}...{% endset %}`, `{% filter %}`), bounded as it grows."""

    __slots__ = ("_budget", "_size")

    def __init__(self, budget: Budget):
        super().__init__()
        self._budget = budget
        self._size = 0

    def append(self, chunk: str) -> None:
        self._size += len(chunk)
        self._budget.allocate(len(chunk), "a block's text")
        self._budget.check_size(self._size, "a block's text")
        super().append(chunk)

    def extend(self, chunks: Iterable[str]) -> None:
        for chunk in chunks:
            self.append(chunk)
