"""JSON from outside read with bounds, and JSON for records written without fail; plus the hostile
answers the other tests send over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowrunner._json import MAX_DEPTH, MAX_DUMP_DEPTH, JSONError, dumps, loads, readable, sendable
from flowrunner.testing import Reply


def nested(levels: int, inner: str = "") -> str:
    return "[" * levels + inner + "]" * levels


DEEP = nested(100_000)  # legal JSON; Python's parser raises RecursionError on it
LONG_INT = "1" * 5000  # legal JSON; Python refuses integers of over 4,300 digits with a ValueError
SURROGATE = "hel\\ud800lo"  # legal JSON for a lone UTF-16 surrogate, which models do emit


def completion(message: dict[str, Any]) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def raw_answer(content_json: str) -> Reply:
    """An answer whose content is written as raw JSON (`"hel\\ud800lo"`, a deep array...), as a server sends it."""
    text = json.dumps(completion({"content": "PLACEHOLDER"})).replace('"PLACEHOLDER"', content_json)
    return Reply(body=text, content_type="application/json")


def tool_call(arguments: str, name: str = "lookup") -> Reply:
    """An answer calling `name` with `arguments` (the raw JSON string the model wrote)."""
    return Reply(body=completion({"content": None, "tool_calls": [
        {"id": "call_hostile", "type": "function", "function": {"name": name, "arguments": arguments}}]}))


@pytest.mark.parametrize("text, reason", [
    (DEEP, f"nested deeper than {MAX_DEPTH} levels"),
    (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a": ' + nested(MAX_DEPTH) + "}", f"nested deeper than {MAX_DEPTH} levels"),
    (LONG_INT, "a number of 5,000 digits, more than the 4,300 a number may have"),
    ('{"n": NaN}', "NaN is not a JSON number"),
    ("[Infinity]", "Infinity is not a JSON number"),
    ("1e400", "the number 1e400 is too large"),
    ('{"a": ', "Expecting value at position 6"),
    (b"\xff{}", "not UTF-8 text"),
])
def test_what_json_loads_refuses_is_a_json_error(text, reason):
    with pytest.raises(JSONError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        loads(text)


def test_json_loads_reads_what_is_within_bounds():
    assert loads(nested(MAX_DEPTH, "1")) == json.loads(nested(MAX_DEPTH, "1"))
    assert loads('"' + "[" * 500 + '"') == "[" * 500  # brackets in a string are no nesting
    assert loads("1" * 4300) == int("1" * 4300)
    assert loads(f'"{SURROGATE}"') == "hel\ud800lo"
    assert loads(b'{"a": [1.5, -0, 1e300]}') == {"a": [1.5, 0, 1e300]}


def test_json_dumps_escapes_lone_surrogates_and_reads_back_the_same():
    value = {"answer": "hel\ud800lo", "argv": "caf\udcff", "k\udc80": ["é", "🙂"]}
    text = dumps(value, indent=2)
    text.encode("utf-8")  # valid UTF-8: no surrogate is left raw
    assert "\\ud800" in text and "é" in text and "🙂" in text  # only what must be escaped is
    assert json.loads(text) == value


def test_json_dumps_never_raises_on_depth_cycles_or_odd_keys():
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    cut = json.loads(dumps({"deep": deep}))
    level = cut["deep"]
    for _ in range(MAX_DUMP_DEPTH - 2):
        level = level[0]
    assert level == [f"(cut: nested deeper than {MAX_DUMP_DEPTH} levels)"]
    selfish: dict[str, Any] = {"name": "loop"}
    selfish["me"] = selfish
    assert json.loads(dumps(selfish)) == {"name": "loop", "me": "(cut: a value that holds itself)"}
    assert json.loads(dumps({(1, 2): "tuple", 3: "int", None: "none"}, sort_keys=True)) == \
        {"(1, 2)": "tuple", "3": "int", "null": "none"}
    assert json.loads(dumps({"when": object}))["when"] == str(object)


def test_readable_text_joins_surrogate_pairs_and_replaces_lone_ones():
    assert readable("plain é 🙂") == "plain é 🙂"
    assert readable("\ud83d\ude00 hel\ud800lo caf\udce9") == "😀 hel\ufffdlo caf\ufffd"
    request = {"messages": [{"role": "user", "content": "caf\udce9"}], "k\ud800": ("x",), "n": 1}
    assert sendable(request) == {"messages": [{"role": "user", "content": "caf\ufffd"}], "k\ufffd": ["x"], "n": 1}
