"""Reading cassette YAML quickly, into exactly the data vcrpy's own loader reads."""

from __future__ import annotations

import pytest
import yaml
from vcr.serializers import yamlserializer

from flowrunner._cassette_format import load_yaml

from conftest import FLOWS

SHIPPED = sorted(FLOWS.glob("cassettes/**/*.yaml"))

TRICKY = {
    "scalars": "a: 1\nb: 1.5\nc: null\nd: ~\ne: true\nf: 'true'\ng: 0x1A\nh: 2024-01-02\ni: ''\nj:\nk: .inf\n",
    "quoted and block text": "a: 'it''s'\nb: \"tab\\there\"\nc: |\n  two\n  lines\nd: >\n  folded\n  text\n",
    "anchors and aliases": "base: &b {x: 1, y: [1, 2]}\ncopy: *b\nlist: [*b, *b]\n",
    "merge key": "base: &b {x: 1}\nmore: {<<: *b, y: 2}\n",
    "vcrpy's python tags": "a: !!python/str text\nb: !!python/tuple [1, 2]\nc: !!python/unicode u\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "duplicate keys": "a: 1\na: 2\n",
    "number keys": "1: one\n2.5: x\nnull: n\n",
    "empty document": "",
    "nested 600 deep": "interactions: " + "[" * 600 + "]" * 600,
}


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(FLOWS)) for p in SHIPPED])
def test_a_shipped_cassette_reads_as_vcrpy_reads_it(path):
    text = path.read_text()
    assert load_yaml(text) == yamlserializer.deserialize(text)


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_yaml_a_cassette_may_hold_reads_as_vcrpy_reads_it(text):
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))  # to compare 600-deep lists
    try:
        assert load_yaml(text) == yamlserializer.deserialize(text)
    finally:  # later tests run with the stack everyone has
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [echo hi]\n", "a: [1\n", "a: 1\n---\nb: 2\n",
                                  "{[1]: x}\n"])
def test_yaml_vcrpy_refuses_is_refused_the_same_way(text):
    with pytest.raises(Exception) as theirs:
        yamlserializer.deserialize(text)
    with pytest.raises(type(theirs.value)) as ours:
        load_yaml(text)
    assert str(ours.value) == str(theirs.value)


def test_an_alias_is_one_object_so_a_yaml_bomb_costs_only_its_text():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    data = load_yaml("\n".join(levels) + "\n")  # 9**9 strings if each alias were copied
    assert data["i"][0] is data["i"][8] is data["h"]
    assert len(data["i"]) == 9


def test_a_recursive_alias_reads_as_vcrpy_reads_it():
    text = "a: &a [1, *a]\n"
    ours, theirs = load_yaml(text), yamlserializer.deserialize(text)
    assert ours["a"][1] is ours["a"] and theirs["a"][1] is theirs["a"]


def test_without_libyaml_vcrpys_loader_reads(monkeypatch):
    import flowrunner._cassette_format as module

    monkeypatch.setattr(module, "_fast_loader", lambda: None)
    assert load_yaml("a: [1, 'b']\n") == {"a": [1, "b"]}
    assert yaml.__with_libyaml__  # the fast path is what the other tests exercise
