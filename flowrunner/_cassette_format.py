"""What a cassette file must hold for its interactions to replay, checked as it is read.

vcrpy trusts the file: a response without `body`, or a `status` that is text, loads without a word
and fails later, as a KeyError or TypeError deep in its httpx stub, when that response is played.
A cassette is a file people edit, merge and copy, so every interaction is checked when the file
is read, and the first problem is said with the interaction's number and what is wrong there.

It is also read quickly (`load_yaml`): PyYAML's constructor, in Python even under its C loader, spent
more time turning the parsed nodes into data than libyaml spent parsing them, and the garbage
collector, run again and again by the allocations, most of the rest: over half a second for a
2.4 MB cassette. Here libyaml composes the nodes, with no collection meanwhile, and a small loop
builds the data of what a cassette holds (mappings, lists, text; numbers and null through PyYAML's
own constructor); anything else (a `!!python/...` tag, a merge key, a recursive alias, nesting
hundreds deep) goes to vcrpy's loader, so the data read is always what vcrpy's would have read.
"""

from __future__ import annotations

import functools
import gc
from contextlib import contextmanager
from typing import Any, Iterator

from ._schema import describe


class CassetteFormatError(ValueError):
    """An interaction vcrpy could not replay; `use_cassette` says it with the cassette's path."""


class CheckedYamlSerializer:
    """vcrpy's YAML serializer, with what it reads checked by `check_cassette` (a vcrpy serializer:
    an object with `serialize` and `deserialize`; registered by `use_cassette`).

    It also carries the cassette's `mcp` section (the MCP exchanges, `flowrunner.mcp._tape`), a top-level
    key beside vcrpy's `interactions`: vcrpy reads only `interactions` and writes only what it read, so the
    section is kept here as read, and put back when the cassette is written (`mcp_tape` gives the new one)."""

    def __init__(self) -> None:
        self.mcp: Any = None
        """The `mcp` section as read (None: the cassette has none)."""
        self.mcp_tape: Any = None
        """The MCP exchanges of this use of the cassette (`flowrunner.mcp._tape.Tape`), once a flow used MCP."""
        self.replay_only = False
        self.record_mode = "once"
        self.path = "the cassette"

    def deserialize(self, text: str) -> Any:
        data = load_yaml(text)
        check_cassette(data)
        if isinstance(data, dict) and "mcp" in data:
            from .mcp._tape import check_section

            problem = check_section(data["mcp"])
            if problem is not None:
                raise CassetteFormatError(f"mcp: {problem}")
            self.mcp = data["mcp"]
        return data

    def serialize(self, data: Any) -> str:
        from vcr.serializers import yamlserializer

        section = self.mcp_tape.section() if self.mcp_tape is not None else self.mcp
        if section is not None:
            data = {**data, "mcp": section}
        text: str = yamlserializer.serialize(data)
        return text


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_SPECIAL_KEYS = {"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}


class _Unusual(Exception):
    """Something a cassette written by vcrpy does not hold: vcrpy's own loader reads it."""


def load_yaml(text: str) -> Any:
    """The data in a cassette's YAML text, as vcrpy's loader reads it, in a fraction of its time (see above)."""
    import yaml
    from vcr.serializers import yamlserializer

    loader_class = _fast_loader()
    if loader_class is None:  # PyYAML without libyaml
        return yamlserializer.deserialize(text)
    with paused_gc():
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        if node is None:
            return None
        try:
            return _build(node, yaml.constructor.SafeConstructor(), {})
        except (_Unusual, yaml.constructor.ConstructorError, RecursionError):
            return yamlserializer.deserialize(text)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection in the block. Reading a cassette makes hundreds of thousands of objects
    and no garbage; the collector, triggered over and over by the allocations, walked them all each
    time and took three quarters of the reading time (0.45 s of 0.55 s for 2.4 MB)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build(node: Any, constructor: Any, built: dict[int, Any]) -> Any:
    """The data of a composed YAML node; `built` holds the collections made so far (an alias is one object,
    as PyYAML makes it, so a YAML bomb of aliases costs no more than its text)."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    kind = type(node)
    if kind is ScalarNode:
        return node.value if node.tag == _STR else constructor.construct_object(node)
    done = built.get(id(node), _build)
    if done is not _build:
        if done is None:  # an alias of a collection inside itself
            raise _Unusual
        return done
    built[id(node)] = None
    result: Any
    if kind is MappingNode and node.tag == _MAP:
        result = {}
        for key_node, value_node in node.value:
            if key_node.tag in _SPECIAL_KEYS:
                raise _Unusual
            key = _build(key_node, constructor, built)
            try:
                result[key] = _build(value_node, constructor, built)
            except TypeError:  # an unhashable key: vcrpy's loader says so
                raise _Unusual from None
    elif kind is SequenceNode and node.tag == _SEQ:
        result = [_build(item, constructor, built) for item in node.value]
    else:
        raise _Unusual
    built[id(node)] = result
    return result


@functools.cache
def _fast_loader() -> Any:
    """libyaml's parser with PyYAML's safe resolver, minus its per-node calls for path resolvers (none are
    registered); None without libyaml."""
    from yaml.nodes import ScalarNode
    from yaml.resolver import Resolver

    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:
        return None

    class _Loader(CParser, Resolver):
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is ScalarNode and not implicit[0]:
                return self.DEFAULT_SCALAR_TAG  # a quoted scalar is text
            return Resolver.resolve(self, kind, value, implicit)  # type: ignore[no-untyped-call]

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            pass

        def ascend_resolver(self) -> None:
            pass

    if _Loader.yaml_path_resolvers:
        return None
    return _Loader


def check_cassette(data: Any) -> None:
    """CassetteFormatError for the first thing in `data` (a parsed cassette) that cannot be replayed."""
    if not isinstance(data, dict):
        raise CassetteFormatError(f"it holds {describe(data)}, not a mapping with 'interactions'")
    if "interactions" not in data:
        raise CassetteFormatError("no 'interactions' in it")
    interactions = data["interactions"]
    if not isinstance(interactions, list):
        raise CassetteFormatError(f"interactions: expected a list, got {describe(interactions)}")
    for number, interaction in enumerate(interactions, start=1):
        problem = _interaction_problem(interaction)
        if problem is not None:
            where = f"interaction {number} of {len(interactions)}"
            request = interaction.get("request") if isinstance(interaction, dict) else None
            if isinstance(request, dict) and isinstance(request.get("method"), str) \
                    and isinstance(request.get("uri"), str):
                where += f" ({request['method']} {_path(request['uri'])})"
            raise CassetteFormatError(f"{where}: {problem}")


def _path(uri: str) -> str:
    from urllib.parse import urlparse

    path = urlparse(uri).path or "/"
    return path if len(path) <= 80 else path[:77] + "..."


def _interaction_problem(interaction: Any) -> str | None:
    if not isinstance(interaction, dict):
        return f"expected a mapping with 'request' and 'response', got {describe(interaction)}"
    for key in ("request", "response"):
        if key not in interaction:
            return f"no {key!r}"
        if not isinstance(interaction[key], dict):
            return f"{key}: expected a mapping, got {describe(interaction[key])}"
    return _request_problem(interaction["request"]) or _response_problem(interaction["response"])


def _request_problem(request: dict[str, Any]) -> str | None:
    for key in ("method", "uri", "body", "headers"):
        if key not in request:
            return f"request: no {key!r}"
    if not isinstance(request["method"], str):
        return f"request.method: expected text such as POST, got {describe(request['method'])}"
    if not isinstance(request["uri"], str):
        return f"request.uri: expected a URL, got {describe(request['uri'])}"
    if request["body"] is not None and not isinstance(request["body"], (str, bytes)):
        return f"request.body: expected text or null, got {describe(request['body'])}"
    return _headers_problem("request.headers", request["headers"])


def _response_problem(response: dict[str, Any]) -> str | None:
    for key in ("status", "headers", "body"):
        if key not in response:
            return f"response: no {key!r}"
    status = response["status"]
    if not isinstance(status, dict):
        return f"response.status: expected a mapping such as {{code: 200, message: OK}}, got {describe(status)}"
    for key in ("code", "message"):
        if key not in status:
            return f"response.status: no {key!r}"
    code, message = status["code"], status["message"]
    if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
        return f"response.status.code: expected an HTTP status code (100 to 599), got {describe(code)}"
    if message is not None and not (isinstance(message, str) and message.isascii()):
        return f"response.status.message: expected ASCII text or null, got {describe(message)}"
    problem = _headers_problem("response.headers", response["headers"])
    if problem is not None:
        return problem
    body = response["body"]
    if not isinstance(body, dict):
        return f"response.body: expected a mapping with 'string', got {describe(body)}"
    if "string" not in body:
        return "response.body: no 'string'"
    if not isinstance(body["string"], (str, bytes)):
        return f"response.body.string: expected text, got {describe(body['string'])}"
    return None


def _headers_problem(where: str, headers: Any) -> str | None:
    if headers is None and where.startswith("request"):
        return None  # vcrpy reads a request's null headers as none
    if not isinstance(headers, dict):
        return f"{where}: expected a mapping of header names to lists of values, got {describe(headers)}"
    for name, values in headers.items():
        if not isinstance(name, str):
            return f"{where}: expected header names, got {describe(name)}"
        if isinstance(values, str) and where.startswith("request"):
            continue  # vcrpy reads a request header's lone value as its list of one
        if not isinstance(values, list):
            return f"{where}.{name}: expected a list of values, got {describe(values)}"
        for index, value in enumerate(values):
            if not isinstance(value, (str, bytes)):
                return f"{where}.{name}[{index}]: expected text, got {describe(value)}"
    return None
