"""The Batch API job's journal: what it reads back, a torn last line, a line that is not its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrunner._exceptions import ConfigError
from flowrunner.batchapi._journal import Journal, journal_path, read_journal


def test_the_journal_reads_back_what_was_appended_and_a_torn_last_line_is_cut(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "out.jsonl")
    assert path.name == "out.jsonl.batchapi" and read_journal(path).job is None
    journal = Journal(path, read_journal(path))
    journal.add({"t": "job", "job": "j1"})
    journal.add({"t": "part", "w": 1, "p": 1, "file": "file-1", "cids": ["a:1", "b:1"], "hashes": ["h1", "h2"]})
    journal.add({"t": "intent", "w": 1, "p": 1, "tag": "j1:1:1"})
    journal.add({"t": "batch", "w": 1, "p": 1, "batch": "batch_1"})
    journal.add({"t": "answer", "cid": "a:1", "h": "h1", "s": 200, "b": {"choices": []}, "e": None}, sync=False)
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b'{"t": "done", "w": 1, "p"')  # a kill inside a write
    state = read_journal(path)
    part = state.parts[(1, 1)]
    assert (state.job, state.torn, part.batch, part.tag, part.done) == ("j1", True, "batch_1", "j1:1:1", False)
    assert dict(zip(part.cids, part.hashes)) == {"a:1": "h1", "b:1": "h2"}
    assert state.answers["a:1"].status == 200 and state.waves == 1
    Journal(path, state).add({"t": "done", "w": 1, "p": 1, "status": "completed", "files": ["file-2"]})
    again = read_journal(path)
    assert (again.torn, again.parts[(1, 1)].done, again.parts[(1, 1)].files) == (False, True, ["file-2"])


@pytest.mark.parametrize("line", [b"not json\n", b'{"t": "mystery"}\n', b'{"t": "batch", "w": "x"}\n', b"[1]\n"])
def test_a_line_that_is_not_the_journal_s_is_refused_with_its_place(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "out.jsonl.batchapi"
    path.write_bytes(b'{"t": "job", "job": "j"}\n' + line)
    with pytest.raises(ConfigError, match=r"out.jsonl.batchapi:2 is not a line of a flowrunner Batch API journal"):
        read_journal(path)
