"""Fuzzing: bad input never crashes with a traceback. Random and mutated YAML through the loader, and
mangled server answers through the response handling, must end in flowrunner's own errors.

Seeded, so a failure reproduces; a few thousand cases in a few seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest

from flowrunner import APIError, Engine, FlowValidationError, OpenAITransport, ResponseError
from flowrunner._loader import load_flow_text
from flowrunner._stream import StreamFormatError, accumulate
from flowrunner._transport import parse_completion
from flowrunner.testing import Reply

FLOWS = Path(__file__).resolve().parent.parent / "flows"
DATA = Path(__file__).resolve().parent / "data"

SEEDS = range(3)
EXAMPLES = [p.read_text(encoding="utf-8") for p in sorted(FLOWS.glob("*.yaml"))]
JUNK = ["", " ", "\n", ":", "- ", "{", "}", "[", "]", "&a", "*a", "!!python/object:os.system", "<<: *a", "'", '"',
        "{{", "}}", "{%", "%}", "\t", "\x00", "\ufeff", "é", "🙂", "~", "null", "true", "1e999", "-0", "0x1F",
        "? ", "|", ">", "#", "%YAML 1.1\n---\n", "...", "---", "\\", "&x [*x]", "{{ inputs.__class__ }}"]


def mutations(text: str, rng: random.Random, count: int) -> Iterator[str]:
    """Byte-level and line-level damage to a valid flow: deletions, insertions, swaps, truncation."""
    lines = text.splitlines(keepends=True)
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            cut = rng.randrange(len(text) + 1)
            yield text[:cut]
        elif kind == 1:
            at = rng.randrange(len(text) + 1)
            yield text[:at] + rng.choice(JUNK) + text[at:]
        elif kind == 2:
            at = rng.randrange(len(text))
            yield text[:at] + text[at + rng.randint(1, 20):]
        elif kind == 3 and len(lines) > 2:
            copy = list(lines)
            i, j = rng.randrange(len(copy)), rng.randrange(len(copy))
            copy[i], copy[j] = copy[j], copy[i]
            yield "".join(copy)
        elif kind == 4:
            copy = list(lines)
            i = rng.randrange(len(copy))
            copy[i] = " " * rng.randint(0, 6) + copy[i].lstrip()
            yield "".join(copy)
        else:
            yield "".join(rng.choice(JUNK) for _ in range(rng.randint(1, 30)))


def check_loads_or_refuses(text: str, folder: Path) -> None:
    try:
        load_flow_text(text, str(folder / "fuzzed.yaml"), folder)
    except FlowValidationError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        str(exc)  # formatting the problems must not fail either


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_flows_load_or_fail_with_located_problems(seed: int) -> None:
    rng = random.Random(seed)
    for text in EXAMPLES:
        for mutated in mutations(text, rng, 120):
            check_loads_or_refuses(mutated, FLOWS)


@pytest.mark.parametrize("text", [
    "steps: " + "[" * 5000,
    "a: " + "{a: " * 3000 + "1" + "}" * 3000,
    "- " * 4000 + "x",
    'x: "' + "a" * 2_000_000 + '"\nsteps: []\n',
    "a: &a [" + ",".join(["x"] * 50) + "]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 50) + "]\n" for i in range(8)),
    "\x00" * 100,
    "steps:\n" + "  - id: a\n    messages: [{role: user, content: hi}]\n" * 20000,
])
def test_pathological_yaml_is_refused_quickly(text: str) -> None:
    check_loads_or_refuses(text, FLOWS)


# -- responses ---------------------------------------------------------------------------------------

def real_bodies() -> list[Any]:
    bodies = []
    for path in sorted((DATA / "real-responses").glob("*.json")):
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(recorded.get("body"), dict):
            bodies.append(recorded["body"])
    return bodies


WEIRD = [None, True, 0, -1, 1.5, "", "x", [], {}, [None], {"x": None}, "null", 10**40]


def mangle(value: Any, rng: random.Random) -> Any:
    """A copy of JSON data with one node replaced, removed or retyped, somewhere inside."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        copy = dict(value)
        if rng.random() < 0.3:
            del copy[key]
        else:
            copy[key] = mangle(copy[key], rng)
        return copy
    if isinstance(value, list) and value and rng.random() < 0.7:
        copy = list(value)
        i = rng.randrange(len(copy))
        copy[i] = mangle(copy[i], rng)
        return copy
    return rng.choice(WEIRD)


@pytest.mark.parametrize("seed", SEEDS)
def test_mangled_completions_parse_or_fail_with_response_errors(seed: int) -> None:
    rng = random.Random(seed)
    bodies = real_bodies()
    assert len(bodies) >= 5
    for _ in range(1500):
        body = mangle(rng.choice(bodies), rng)
        try:
            completion = parse_completion(body)
        except (ResponseError, APIError):
            continue
        # What parses must be usable by the engine as it is.
        assert completion.content is None or isinstance(completion.content, str)
        for call in completion.tool_calls:
            assert isinstance(call.name, str) and isinstance(call.arguments, str)


@pytest.mark.parametrize("seed", SEEDS)
def test_mangled_streams_fold_or_fail_with_format_errors(seed: int) -> None:
    rng = random.Random(seed)
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi", "tool_calls": [
                 {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                 "finish_reason": None}]}
    for _ in range(1000):
        events = [mangle(chunk, rng) for _ in range(rng.randint(1, 4))]
        try:
            accumulate(iter(events))
        except StreamFormatError:
            continue


BAD_ANSWERS = [
    Reply(200, '{"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assis', content_type="application/json"),
    Reply(200, "not json at all", content_type="application/json"),
    Reply(200, "<html><body>Welcome to the captive portal</body></html>", content_type="text/html"),
    Reply(200, {"id": "x", "choices": "none"}),
    Reply(200, {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": 42}}]}),
    Reply(200, {"id": "x", "choices": [{"message": {"tool_calls": [{"function": "f"}]}}]}),
    Reply(200, []),
    Reply(200, "data: {\"choices\": [\ndata: [DONE]\n\n", content_type="text/event-stream"),
    Reply(200, b"\xff\xfe\x00garbage", content_type="application/json"),
    Reply(418, "I'm a teapot"),
    Reply(500, {"error": "a string, not an object"}),
    Reply(503, "", content_type="text/plain"),
]


@pytest.mark.parametrize("reply", BAD_ANSWERS, ids=lambda r: str(r.body)[:30])
def test_bad_answers_over_http_fail_the_run_cleanly(chat_server, make_flow, reply: Reply) -> None:
    flow = make_flow("""
        model: m
        retry: {max_attempts: 2, backoff: {initial: 1ms}}
        steps:
          - id: a
            messages: [{role: user, content: hi}]
        """)
    chat_server.enqueue(reply, reply)
    with OpenAITransport(base_url=chat_server.base_url, timeout=5) as transport:
        record = Engine(transport).run(flow)
    assert record.status == "failed"
    assert record.error["type"] in ("ResponseError", "APIError")
    assert "Traceback" not in record.error["message"] and record.error["message"].strip()


BILLION_LAUGHS = "a: &a [" + ",".join(["x"] * 50) + "]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 50) + "]\n" for i in range(8))
MERGE_LAUGHS = "a0: &a0 {x: 1}\n" + "".join(
    f"a{i}: &a{i} {{<<: [" + ", ".join([f"*a{i - 1}"] * 50) + "]}\n" for i in range(1, 9))


@pytest.mark.parametrize("text", [BILLION_LAUGHS, MERGE_LAUGHS], ids=["aliases", "merge-keys"])
def test_alias_bombs_are_refused_by_validate_within_a_time_bound(tmp_path: Path, text: str) -> None:
    # 50**9 nodes once expanded: an unbounded expansion would run for ever, so it must time out and fail
    # here rather than hang the suite (the in-process test above has no bound of its own).
    import subprocess
    import sys

    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    assert f"{path}:" in done.stderr
    assert "error: the document expands to too many nodes (more than 100,000; YAML aliases?)" in done.stderr
    assert "Traceback" not in done.stderr
