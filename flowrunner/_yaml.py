"""YAML text to plain data, remembering the line and column every value came from.

PyYAML's loaders forget positions, silently keep the last of two equal keys, and expand aliases
without limit (the "billion laughs"). flowrunner composes the node tree itself, with limits, and
walks it into dicts, lists and scalars so that every later error can point into the file.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Union, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from ._exceptions import FlowValidationError, Location, Problem
from ._json import long_number

JsonPath = tuple[Union[str, int], ...]
"""Where a value sits in the document: keys and list indexes from the top, e.g. ("steps", 0, "id")."""

MAX_BYTES = 5 * 1024 * 1024
"""A flow file is a program, not a data set; anything bigger is a mistake or an attack."""
MAX_NODES = 100_000
"""Values in the document once aliases are expanded (a real flow has a few hundred)."""
MAX_DEPTH = 200
"""Nesting levels; libyaml's own composer crashes the interpreter somewhere past 10,000."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:set", "tag:yaml.org,2002:omap")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Refused(Exception):
    """The document breaks a limit: stop at once, with one problem."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(problem.message)


class _LimitedComposer(Composer):
    """PyYAML's composer, refusing documents too deep or too big while it builds them."""

    def __init__(self, filename: str) -> None:
        Composer.__init__(self)
        self._filename = filename
        self._depth = 0
        self._count = 0

    if TYPE_CHECKING:
        def peek_event(self) -> Any:
            """Provided by the parser this composer is mixed with (Parser or CParser)."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        self._count += 1
        if self._depth > MAX_DEPTH or self._count > MAX_NODES:
            mark = self.peek_event().start_mark
            where = Location(self._filename, mark.line + 1, mark.column + 1)
            raise _Refused(_too_deep(where) if self._depth > MAX_DEPTH else _too_many(where, expanded=False))
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_LimitedComposer, Reader, Scanner, Parser, SafeConstructor, Resolver):
    """Pure-Python parsing: SafeLoader's parts with the limited composer."""

    def __init__(self, text: str, filename: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _LimitedComposer.__init__(self, filename)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


try:
    from yaml._yaml import CParser  # what yaml.cyaml re-exports (its stubs do not export it)
except ImportError:  # PyYAML built without libyaml
    _LOADER: type = _PyLoader
else:

    class _CLoader(_LimitedComposer, CParser, SafeConstructor, Resolver):
        """libyaml's fast parser (CSafeLoader's) under the limited Python composer."""

        def __init__(self, text: str, filename: str) -> None:
            CParser.__init__(self, text)
            _LimitedComposer.__init__(self, filename)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _LOADER = _CLoader


class Positions:
    """Where each value (and each mapping key) of a parsed document is in the file."""

    def __init__(self, filename: str, values: dict[JsonPath, Location], keys: dict[JsonPath, Location],
                 comma_splits: dict[JsonPath, str] | None = None):
        self.filename = filename
        self._values = values
        self._keys = keys
        self._comma_splits = comma_splits or {}

    def comma_split(self, path: JsonPath) -> str | None:
        """For a key that is most likely the rest of the previous value after a comma in a `{...}` mapping
        (`{content: Be brief, and kind}` reads `and kind` as a key), why, and the quoted value meant."""
        meant = self._comma_splits.get(tuple(path))
        if meant is None:
            return None
        return (f"in a {{...}} mapping a comma ends the value, so YAML read {path[-1]!r} as a key; "
                f"quote the value: {meant}")

    def value(self, path: JsonPath) -> Location:
        """The value at `path`, or the nearest enclosing value that exists."""
        path = tuple(path)
        while path not in self._values and path:
            path = path[:-1]
        return self._values.get(path, Location(self.filename, 1, 1))

    def key(self, path: JsonPath) -> Location:
        """The key of the mapping entry at `path`; for a list item, the item itself."""
        path = tuple(path)
        if path in self._keys:
            return self._keys[path]
        return self.value(path)

    def __contains__(self, path: object) -> bool:
        return path in self._values


def format_path(path: JsonPath) -> str:
    """A path as a user would write it: `steps[0].messages[1].role`, `functions['get-weather']`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "the top level"


def where(path: JsonPath) -> str:
    """`in steps[0]`, or `at the top level`: for messages about the mapping at `path`."""
    return f"in {format_path(path)}" if path else "at the top level"


def parse_yaml(text: str, filename: str) -> tuple[Any, Positions]:
    """Parse one YAML document holding a mapping; every problem becomes a located FlowValidationError."""
    if len(text) > MAX_BYTES:
        raise FlowValidationError([Problem(
            Location(filename, 1, 1),
            f"the file is too large ({len(text) / 1024 / 1024:.1f} MB); a flow file may be at most "
            f"{MAX_BYTES // 1024 // 1024} MB",
            "keep large data in files that your functions read, not in the flow")])
    try:
        loader = _LOADER(text, filename)  # the pure-Python reader checks characters here
    except ReaderError as exc:
        raise FlowValidationError([_reader_problem(exc, text, filename)]) from None
    try:
        try:
            root = loader.get_single_node()
        except _Refused as exc:
            raise FlowValidationError([exc.problem]) from None
        except yaml.MarkedYAMLError as exc:
            raise FlowValidationError([_syntax_problem(exc, text, filename)]) from None
        except ReaderError as exc:
            raise FlowValidationError([_reader_problem(exc, text, filename)]) from None
        if root is None:
            raise FlowValidationError([Problem(
                Location(filename, 1, 1), "the file is empty",
                "a flow needs at least `steps:`; see flows/weather.yaml for an example")])
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else "a single value"
            raise FlowValidationError([Problem(
                _location(root, filename), f"the top level of a flow must be a mapping of keys, not {kind}",
                "start with keys such as `name:`, `model:` and `steps:` at the left margin")])
        walker = _Walker(loader, text, filename)
        try:
            data = walker.walk(root, (), 0)
        except _Refused as exc:
            raise FlowValidationError([exc.problem]) from None
    finally:
        loader.dispose()
    if walker.problems:
        raise FlowValidationError(walker.problems)
    return data, Positions(filename, walker.values, walker.keys, walker.comma_splits)


class _Walker:
    """Turns the node tree into plain data, recording positions and collecting problems."""

    def __init__(self, loader: Any, text: str, filename: str):
        self.loader = loader
        self.text = text
        self.filename = filename
        self.values: dict[JsonPath, Location] = {}
        self.keys: dict[JsonPath, Location] = {}
        self.problems: list[Problem] = []
        self.comma_splits: dict[JsonPath, str] = {}
        self._count = 0
        self._active: set[int] = set()  # collection nodes being walked: an alias to one is a cycle
        self._lines: list[str] | None = None

    def walk(self, node: Node, path: JsonPath, depth: int) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise _Refused(_too_many(self._top_location(path), expanded=True))
        if depth > MAX_DEPTH:
            raise _Refused(_too_deep(self._top_location(path)))
        self.values[path] = self._value_location(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            raise _Refused(Problem(_location(node, self.filename),
                                   "a YAML alias refers to a value that contains it (a recursive alias)",
                                   "an alias (*name) must refer to an anchor (&name) outside the value it is in"))
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(Problem(_location(node, self.filename),
                                         f"the YAML tag {node.tag!r} is not supported in a flow",
                                         "remove the tag (the word starting with '!')"))
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.walk(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
            return self._mapping(cast(MappingNode, node), path, depth)  # neither scalar nor sequence: a mapping
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: dict[str, Node] = {}
        merges: list[Node] = []
        previous: tuple[str, Node] | None = None
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self._key(key_node, node)
            if key is None:
                continue
            if key in explicit:
                first = explicit[key].start_mark.line + 1
                self.problems.append(Problem(
                    _location(key_node, self.filename),
                    f"duplicate key {key!r} {where(path)} (first at line {first})",
                    "YAML would keep only the last one; remove or rename one of them"))
                continue
            explicit[key] = key_node
            self.keys[path + (key,)] = _location(key_node, self.filename)
            if node.flow_style and previous is not None and _comma_split(previous[1], key_node, value_node):
                meant = f"{previous[1].value}, {key}"
                self.comma_splits[path + (key,)] = f"{previous[0]}: {json.dumps(meant, ensure_ascii=False)}"
            previous = (key, value_node)
            result[key] = self.walk(value_node, path + (key,), depth + 1)
        # `<<: *base` merge keys: the mapping's own keys win, then earlier merged mappings.
        for key_node, value_node in self._merged(merges, set()):
            key = self._key(key_node, node)
            if key is None or key in result:
                continue
            self.keys[path + (key,)] = _location(key_node, self.filename)
            result[key] = self.walk(value_node, path + (key,), depth + 1)
        return result

    def _merged(self, merges: list[Node], visiting: set[int]) -> list[tuple[Node, Node]]:
        entries: list[tuple[Node, Node]] = []
        for value in merges:
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.problems.append(Problem(
                        _location(source, self.filename), "a merge key (<<) must be followed by a mapping",
                        "write `<<: *name` with an anchor `&name` on a mapping, or a list of such aliases"))
                    continue
                if id(source) in visiting:
                    raise _Refused(Problem(_location(source, self.filename),
                                           "a merge key (<<) merges a mapping into itself (a recursive alias)"))
                self._count += len(source.value)
                if self._count > MAX_NODES:
                    raise _Refused(_too_many(_location(source, self.filename), expanded=True))
                own = [(k, v) for k, v in source.value if k.tag != _MERGE_TAG]
                nested = [v for k, v in source.value if k.tag == _MERGE_TAG]
                entries.extend(own)
                entries.extend(self._merged(nested, visiting | {id(source)}))
        return entries

    def _key(self, node: Node, mapping: MappingNode) -> str | None:
        """A mapping key as a string (JSON keys are strings), or None after recording why not."""
        if isinstance(node, ScalarNode):
            value = self._scalar(node)
            if isinstance(value, str):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return cast(str, node.value)  # as written: `50256: -100` under logit_bias
            if isinstance(value, bool) and not node.style and node.value.lower() not in ("true", "false"):
                # YAML 1.1 reads `on`, `off`, `yes`, `no` as booleans; as keys they are names (YAML 1.2
                # agrees), or `retry: {on: [429]}` could not be written.
                return cast(str, node.value)
            what = {bool: "a boolean", type(None): "null", float: "a number"}.get(type(value), "a non-string value")
            self.problems.append(Problem(
                _location(node, self.filename),
                f"the key {node.value or '(empty)'!r} is read by YAML as {what}, not as a name",
                f"quote it to use it as a name: '{node.value}':"))
            return None
        if isinstance(node, MappingNode) and node.flow_style:
            self.problems.append(Problem(
                _location(mapping, self.filename), "YAML reads '{{' here as the start of a mapping, not as a template",
                'quote a value that starts with \'{\', e.g. content: "{{ inputs.question }}"'))
        else:
            self.problems.append(Problem(_location(node, self.filename),
                                         "a mapping key must be a name, not a list or a mapping"))
        return None

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            value = self.loader.construct_object(node)
        except ConstructorError as exc:
            self.problems.append(Problem(_location(node, self.filename),
                                         f"cannot read this value: {exc.problem}",
                                         "remove the YAML tag (the word starting with '!') or quote the value"))
            return node.value
        except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits())
            self.problems.append(Problem(_location(node, self.filename), f"this value is {long_number(node.value)}",
                                         "write a number of sensible size, or quote the value to make it text"))
            return node.value
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        return node.value  # a date, !!binary, ...: keep the text as written, as JSON would have it

    def _value_location(self, node: Node) -> Location:
        """Where a value starts; for a `|` or `>` block, the first line of its text (where templates start)."""
        if isinstance(node, ScalarNode) and node.style in ("|", ">") and node.value:
            if self._lines is None:
                self._lines = self.text.split("\n")
            line = node.start_mark.line + 1  # 0-based index of the line after the indicator
            for text in self._lines[line:]:
                if text.strip():
                    return Location(self.filename, line + 1, len(text) - len(text.lstrip(" ")) + 1)
        return _location(node, self.filename)

    def _top_location(self, path: JsonPath) -> Location:
        return self.keys.get(path[:1]) or Location(self.filename, 1, 1)


def _location(node: Node, filename: str) -> Location:
    return Location(filename, node.start_mark.line + 1, node.start_mark.column + 1)


def _too_many(where: Location, *, expanded: bool) -> Problem:
    if expanded:
        return Problem(where, f"the document expands to too many nodes (more than {MAX_NODES:,}; YAML aliases?)",
                       "each alias (*name) repeats the whole value of its anchor (&name); "
                       "a flow should not need nested aliases")
    return Problem(where, f"the document has too many nodes (more than {MAX_NODES:,})",
                   "keep large data in files that your functions read, not in the flow")


def _too_deep(where: Location) -> Problem:
    return Problem(where, f"the document nests too deeply (more than {MAX_DEPTH} levels)",
                   "a flow needs a few levels of nesting; check for runaway brackets or aliases")


def _comma_split(before: Node, key: Node, value: Node) -> bool:
    """In a flow mapping, a plain key with no value right after a plain value: `{a: x, y z}` meant `a: "x, y z"`."""
    return (isinstance(before, ScalarNode) and not before.style and before.tag == _STR_TAG  # plain: no quotes
            and isinstance(key, ScalarNode) and not key.style and isinstance(value, ScalarNode)
            and not value.style and value.value == "" and before.end_mark.line == key.start_mark.line)


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, filename: str) -> Problem:
    if ((exc.context or "").startswith("while scanning a quoted scalar") and exc.context_mark is not None
            and "end of stream" in (exc.problem or "")):
        return _unclosed_quote(exc.context_mark, text, filename)
    mark = exc.problem_mark or exc.context_mark
    where = Location(filename, mark.line + 1, mark.column + 1) if mark else None
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    lines = text.split("\n")
    line = lines[mark.line] if mark and mark.line < len(lines) else ""
    problem = exc.problem or ""
    if "single document" in (exc.context or ""):
        hint = "a flow file holds one YAML document: remove the extra '---'"
    elif "\t" in line[: mark.column + 1 if mark else 0] or "'\\t'" in problem:
        hint = "YAML indents with spaces, not tabs"
    elif "{{" in line or "{%" in line:
        hint = 'quote a value that starts with \'{\' or contains ": ", e.g. content: "{{ inputs.question }}"'
    elif "mapping values are not allowed" in problem:
        hint = 'quote a value that contains ": ", e.g. description: "Note: ...", or check the indentation'
    else:
        hint = "check the indentation and the quoting around this place"
    return Problem(where, message, hint)


def _unclosed_quote(mark: Any, text: str, filename: str) -> Problem:
    """A quoted string that never ends is reported where it opens: the end of the file is no help."""
    lines = text.split("\n")
    line = lines[mark.line] if mark.line < len(lines) else ""
    quote = line[mark.column] if mark.column < len(line) else '"'
    message = f"YAML syntax error: the string opened by {quote} here is never closed (the file ends inside it)"
    escape = "write \\\" for a \" inside it" if quote == '"' else "write '' for a ' inside it"
    return Problem(Location(filename, mark.line + 1, mark.column + 1), message,
                   f"close the string with {quote} where it ends; {escape}")


def _reader_problem(exc: ReaderError, text: str, filename: str) -> Problem:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return Problem(Location(filename, line, column),
                   f"the file contains a character YAML does not allow (U+{code:04X})",
                   "remove control characters; write them as escapes in a double-quoted string (\"\\x07\")")
