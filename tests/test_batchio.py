"""Batch files: keys of input lines, the append-only results file, reading it back for --resume."""

from __future__ import annotations

import json
import threading

import pytest

from flowrunner import ConfigError
from flowrunner._batchio import ResultWriter, count_inputs, read_inputs, read_results

from test_json import DEEP, LONG_INT


def write_lines(path, *lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_keys_are_ids_or_hashes_of_canonical_json_and_repeats_are_numbered(tmp_path):
    path = write_lines(tmp_path / "in.jsonl",
                       '{"id": "a", "q": 1}', '{"q": 1, "r": 2}', "", '{"r":2,"q":1}', '{"id": 7}',
                       '{"id": "a", "q": 9}', '{"id": true}')
    items = list(read_inputs(path))
    assert [i.line for i in items] == [1, 2, 4, 5, 6, 7]  # the blank line is not an input
    keys = [i.key for i in items]
    assert keys[0] == "a" and keys[3] == "7" and keys[4] == "a#2"
    assert len(keys[1]) == 16 and keys[2] == keys[1] + "#2"  # same JSON, other key order and spacing
    assert keys[5] not in ("True", "true")  # a boolean is not an id: hashed like any other line
    assert all(i.problem is None for i in items)
    assert count_inputs(path) == 6


def test_lines_that_are_not_objects_say_why_with_their_line_number(tmp_path):
    items = list(read_inputs(write_lines(tmp_path / "in.jsonl", "{oops", "[1, 2]", '"text"')))
    assert items[0].problem.startswith("line 1 is not JSON") and items[0].value == "{oops"
    assert items[1].problem == "line 2 is a JSON list, not an object of input values"
    assert items[2].problem == "line 3 is a JSON str, not an object of input values"
    assert len({i.key for i in items}) == 3


def test_a_missing_inputs_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the inputs"):
        list(read_inputs(tmp_path / "nope.jsonl"))


def test_latest_result_per_key_wins(tmp_path):
    out = write_lines(tmp_path / "out.jsonl", '{"key": "a", "status": "failed"}', '{"key": "b", "status": "succeeded"}',
                      '{"key": "a", "status": "succeeded"}')
    previous = read_results(out, repair=True)
    assert previous.status == {"a": "succeeded", "b": "succeeded"} and previous.lines == 3
    assert not previous.cut_torn_line


def test_a_torn_last_line_is_cut_only_when_repairing(tmp_path):
    out = tmp_path / "out.jsonl"
    whole = '{"key": "a", "status": "succeeded"}\n'
    out.write_text(whole + '{"key": "b", "sta')
    looked = read_results(out, repair=False)
    assert looked.cut_torn_line and looked.status == {"a": "succeeded"}
    assert out.read_text().endswith('"sta')  # untouched
    repaired = read_results(out, repair=True)
    assert repaired.cut_torn_line and out.read_text() == whole


def test_a_results_file_of_something_else_is_refused(tmp_path):
    out = write_lines(tmp_path / "out.jsonl", '{"key": "a", "status": "succeeded"}', "hello")
    with pytest.raises(ConfigError, match=r"out.jsonl:2 is not a flowrunner result line"):
        read_results(out, repair=True)


def test_writer_appends_whole_lines_from_many_threads_and_drops_writes_after_close(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"key": "old", "status": "succeeded"}\n')
    writer = ResultWriter(out, sync_every=7)
    big = "x" * 10_000

    def write(n):
        for i in range(50):
            assert writer.write({"key": f"{n}-{i}", "status": "succeeded", "text": big})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert writer.write({"key": "late", "status": "succeeded"}) is False
    lines = out.read_text().splitlines()
    assert len(lines) == 201 and lines[0] == '{"key": "old", "status": "succeeded"}'
    records = [json.loads(line) for line in lines]
    assert {r["key"] for r in records[1:]} == {f"{n}-{i}" for n in range(4) for i in range(50)}
    assert all(r.get("text", big) == big for r in records)


@pytest.fixture
def fsyncs(monkeypatch):
    """os.fsync counted (and still done): each call notes how many lines the writer had written by then."""
    import os

    calls: list[int] = []
    real = os.fsync
    writers: list[ResultWriter] = []

    def fsync(fd):
        calls.append(writers[0].written if writers else -1)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls, writers


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for ResultWriter: `clock[0]` is what time.monotonic() says in flowrunner._batchio."""
    import types

    import flowrunner._batchio as batchio

    now = [1000.0]
    monkeypatch.setattr(batchio, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_writer_fsyncs_every_sync_every_lines_and_at_close(tmp_path, fsyncs, clock):
    calls, writers = fsyncs
    writer = ResultWriter(tmp_path / "out.jsonl", sync_every=7, sync_seconds=60)
    writers.append(writer)
    for i in range(20):
        writer.write({"key": str(i), "status": "succeeded"})
        clock[0] += 0.1  # 2 s in all: far from sync_seconds
    assert calls == [7, 14]
    writer.close()
    assert calls == [7, 14, 20]
    writer.close()  # closing twice syncs nothing more
    assert calls == [7, 14, 20]


def test_writer_fsyncs_a_slow_trickle_after_sync_seconds(tmp_path, fsyncs, clock):
    calls, writers = fsyncs
    writer = ResultWriter(tmp_path / "out.jsonl", sync_every=100, sync_seconds=2.0)
    writers.append(writer)
    writer.sync_if_due()
    assert calls == []  # nothing written: nothing to sync
    writer.write({"key": "a", "status": "succeeded"})
    clock[0] += 1.5
    writer.sync_if_due()
    assert calls == []  # not due yet
    clock[0] += 0.5
    writer.sync_if_due()
    assert calls == [1]  # due: sync_seconds since the writer opened
    clock[0] += 5
    writer.sync_if_due()
    assert calls == [1]  # due, but nothing new to sync
    writer.write({"key": "b", "status": "succeeded"})
    assert calls == [1, 2]  # a write after sync_seconds syncs at once
    clock[0] += 1
    writer.write({"key": "c", "status": "succeeded"})
    writer.sync_if_due()
    assert calls == [1, 2]  # 1 s since the last sync
    writer.close()
    assert calls == [1, 2, 3]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def test_a_byte_order_mark_on_the_first_line_is_not_an_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "q": 1}\n{"id": "b", "q": 2}\n')  # as Windows editors save
    lines = list(read_inputs(path))
    assert [(i.key, i.value, i.problem) for i in lines] == [("a", {"id": "a", "q": 1}, None),
                                                           ("b", {"id": "b", "q": 2}, None)]


@pytest.mark.parametrize("line, reason", [
    ('{"q": ' + DEEP + "}", "nested deeper than 100 levels"),
    ('{"q": ' + LONG_INT + "}", "a number of 5,000 digits"),
    ('{"q": NaN}', "NaN is not a JSON number"),
], ids=["deep", "long-int", "nan"])
def test_an_input_line_json_cannot_hold_is_that_lines_problem(tmp_path, line, reason):
    path = write_lines(tmp_path / "in.jsonl", '{"q": 1}', line, '{"q": 3}')
    items = list(read_inputs(path))
    assert [item.problem is None for item in items] == [True, False, True]
    assert items[1].problem.startswith(f"line 2 is not JSON ({reason}")


def test_a_results_line_json_cannot_hold_is_refused_with_its_line_number(tmp_path):
    path = write_lines(tmp_path / "out.jsonl", '{"key": "a", "status": "succeeded"}',
                       '{"key": "b", "status": "failed", "deep": ' + DEEP + "}")
    with pytest.raises(ConfigError, match=r"out.jsonl:2 is not a flowrunner result line"):
        read_results(path, repair=True)


def test_lone_surrogates_in_input_lines_and_results_keep_their_keys(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", '{"id": "a\\ud800", "q": 1}', '{"q": "b\\udcff"}', '{"q": "b\\udcff"}')
    items = list(read_inputs(path))
    assert [item.problem for item in items] == [None, None, None]
    assert items[0].key == "a\ud800" and items[2].key == items[1].key + "#2"
    out = tmp_path / "out.jsonl"
    writer = ResultWriter(out)
    for item in items:
        assert writer.write({"key": item.key, "status": "succeeded", "input": item.value})
    writer.close()
    out.read_bytes().decode("utf-8")  # valid UTF-8, the surrogates escaped
    assert read_results(out, repair=False).status == {item.key: "succeeded" for item in items}
