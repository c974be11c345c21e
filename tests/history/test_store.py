"""flowrunner.history: the SQLite run history itself (write, read, ids, schema, concurrency, failures)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowrunner._record import CallRecord, RoundRecord, RunRecord, StepRecord
from flowrunner.history import SCHEMA_VERSION, History, HistoryError, default_path, flow_hash, new_id

from conftest import ROOT


def record(flow: str = "weather", *, status: str = "succeeded", question: str = "Boston?", tokens: int = 10,
           file: str = "flows/weather.yaml") -> RunRecord:
    step = StepRecord(id="answer", model="gpt-4o-mini", content="sunny",
                      rounds=[RoundRecord(response_id="chatcmpl-1", model="gpt-4o-mini", finish_reason="stop",
                                          content="sunny", calls=[CallRecord("c1", "lookup", {"q": question})])],
                      usage={"prompt_tokens": tokens, "completion_tokens": 2, "total_tokens": tokens + 2})
    run = RunRecord(flow=flow, file=file, inputs={"question": question}, status=status,  # type: ignore[arg-type]
                    outputs={"answer": "sunny"} if status == "succeeded" else {}, steps=[step],
                    usage=dict(step.usage))
    if status == "failed":
        run.error = {"type": "APIError", "message": "HTTP 500", "step": "answer"}
    return run


@pytest.fixture
def history(tmp_path: Path):
    with History(tmp_path / "history.db") as h:
        yield h


def test_a_written_run_reads_back_whole_with_its_query_columns(history):
    run_id = history.write(record(), flow_text="name: weather\n", command="run")
    assert run_id is not None and history.last_error is None
    stored = history.get(run_id)
    assert stored.id == run_id and stored.flow == "weather" and stored.status == "succeeded"
    assert stored.file == str(Path("flows/weather.yaml").absolute())  # the record keeps it as given
    assert stored.record["file"] == "flows/weather.yaml"
    assert stored.flow_hash == flow_hash("name: weather\n") and len(stored.flow_hash or "") == 64
    assert stored.models == ["gpt-4o-mini"]
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (10, 2, 12)
    assert stored.cost is None and stored.error_type is None and stored.command == "run"
    assert stored.record == json.loads(json.dumps(record().to_dict()))
    assert stored.started is not None and abs(stored.started - time.time()) < 3600


def test_runs_are_listed_newest_first_and_filtered(history):
    ids = [history.write(record("weather")), history.write(record("hello", status="failed")),
           history.write(record("weather", question="Paris?"))]
    assert [run.id for run in history.runs()] == ids[::-1]
    assert [run.id for run in history.runs(flow="weather")] == [ids[2], ids[0]]
    assert [run.id for run in history.runs(flow=str(Path("flows/weather.yaml").absolute()))] == [ids[2], ids[1], ids[0]]
    assert [run.id for run in history.runs(status="failed")] == [ids[1]]
    assert [run.id for run in history.runs(search="Paris?")] == [ids[2]]
    assert [run.id for run in history.runs(limit=2)] == [ids[2], ids[1]]
    assert history.runs(since=time.time() + 3600) == []
    assert len(history.runs(since=time.time() - 3600)) == 3
    failed = history.get(ids[1])
    assert failed.error_type == "APIError" and failed.record["error"]["message"] == "HTTP 500"


def test_ids_sort_by_time_and_resolve_from_a_prefix_like_git(history):
    assert new_id(1000.0) < new_id(1000.002) < new_id(2000.0)
    assert len(new_id()) >= 12 and all(c in "0123456789abcdef" for c in new_id())
    first, second = history.write(record()), history.write(record())
    assert first and second and first != second
    assert history.get(first).id == first
    shared = os.path.commonprefix([first, second])
    assert history.get(first[: len(shared) + 1]).id == first
    assert history.get(first[: len(shared) + 1].upper()).id == first
    with pytest.raises(HistoryError) as ambiguous:
        history.get(shared[:4])
    assert "ambiguous" in str(ambiguous.value) and first in str(ambiguous.value) and second in str(ambiguous.value)
    with pytest.raises(HistoryError, match="no run 'ffffffff'"):
        history.get("ffffffff")
    with pytest.raises(HistoryError, match="at least 4 hex digits"):
        history.get("abc")
    with pytest.raises(HistoryError, match="at least 4 hex digits"):
        history.get("xyz%_")  # not passed on to a LIKE or a range as it is


def test_the_file_is_in_wal_mode_at_the_current_schema_version(history):
    history.write(record())
    with sqlite3.connect(history.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


V1_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, started REAL, duration REAL, flow TEXT NOT NULL, file TEXT NOT NULL,
    flow_hash TEXT, status TEXT NOT NULL, models TEXT NOT NULL, prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0, total_tokens INTEGER NOT NULL DEFAULT 0, error_type TEXT,
    command TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX runs_started ON runs (started);
CREATE INDEX runs_flow ON runs (flow, started);
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "history.db"
    old = {**record().to_dict(), "cost": 0.25}  # a record that said its cost before the column existed
    with sqlite3.connect(path) as connection:
        connection.executescript(V1_SCHEMA)
        connection.execute("INSERT INTO runs VALUES ('0123456789abcdef', 1700000000.5, 2.5, 'weather', '/f.yaml', "
                           "NULL, 'succeeded', '[\"m\"]', 1, 2, 3, NULL, 'run', ?)", [json.dumps(old)])
    connection.close()
    with History(path) as history:
        (run,) = history.runs()
        assert run.id == "0123456789abcdef" and run.cost == 0.25 and run.duration == 2.5 and run.models == ["m"]
        assert history.write(record()) is not None
        assert len(history.runs()) == 2
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
    connection.close()
    assert "cost" in columns


def test_a_database_of_a_newer_flowrunner_is_not_touched(tmp_path):
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with History(path) as history:
        assert history.write(record()) is None
        assert "newer than this flowrunner knows" in (history.last_error or "")
        with pytest.raises(HistoryError, match="upgrade flowrunner"):
            history.runs()


def test_a_corrupt_database_fails_the_write_not_the_caller(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database, just text that sits where it should be" * 100)
    with History(path) as history:
        assert history.write(record()) is None
        assert "not a database" in (history.last_error or "")
        with pytest.raises(HistoryError, match="cannot read the history"):
            history.runs()


def test_a_locked_database_fails_the_write_after_the_busy_timeout(tmp_path):
    path = tmp_path / "history.db"
    with History(path) as history:
        history.write(record())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with History(path, timeout=0.1) as history:
            assert history.write(record()) is None
            assert "locked" in (history.last_error or "")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unwritable_folder_fails_the_write(tmp_path):
    (tmp_path / "file").write_text("")
    with History(tmp_path / "file" / "sub" / "history.db") as history:
        assert history.write(record()) is None
        assert "Not a directory" in (history.last_error or "")


def test_reading_a_history_that_does_not_exist_creates_nothing(tmp_path):
    with History(tmp_path / "none" / "history.db", readonly=True) as history:
        assert history.runs() == []
        with pytest.raises(HistoryError, match="no run"):
            history.get("abcd")
    assert not (tmp_path / "none").exists()


def test_threads_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "history.db"
    shared = History(path)
    errors: list[str | None] = []

    def work(own: bool) -> None:
        history = History(path) if own else shared
        for _ in range(25):
            if history.write(record()) is None:
                errors.append(history.last_error)
        if own:
            history.close()

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    shared.close()
    assert errors == []
    with History(path) as history:
        runs = history.runs(limit=1000)
    assert len(runs) == 200 and len({run.id for run in runs}) == 200


WRITER = """
import sys
from pathlib import Path
from flowrunner._record import RunRecord, StepRecord
from flowrunner.history import History
with History(Path(sys.argv[1])) as history:
    for i in range(25):
        run = RunRecord(flow="weather", file="weather.yaml", inputs={"i": i}, steps=[StepRecord(id="a", model="m")])
        if history.write(run) is None:
            print("FAILED", history.last_error)
"""


def test_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "history.db"  # new: the eight also race to create it and its schema
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    try:
        results = [(process.communicate(timeout=120), process.returncode) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for (out, err), code in results:
        assert code == 0, err
        assert "FAILED" not in out, out
    with History(path) as history:
        assert len(history.runs(limit=1000)) == 200


def test_the_default_path_follows_flowrun_home_then_the_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWRUN_HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / "history.db"
    monkeypatch.delenv("FLOWRUN_HOME")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "flowrunner" / "history.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".local" / "share" / "flowrunner" / "history.db"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_path() == tmp_path / "Library" / "Application Support" / "flowrunner" / "history.db"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_path() == tmp_path / "local" / "flowrunner" / "history.db"


def test_a_record_not_redacted_yet_is_redacted_before_it_is_stored(history):
    from flowrunner._secrets import register

    register("sk-library-user-secret-42", "OPENAI_API_KEY")
    run_id = history.write(record(question="is sk-library-user-secret-42 safe?"))
    assert run_id is not None
    assert history.get(run_id).record["inputs"]["question"] == "is [redacted:OPENAI_API_KEY] safe?"
    history.close()
    data = b"".join(p.read_bytes() for p in history.path.parent.iterdir() if p.name.startswith("history.db"))
    assert b"sk-library-user-secret-42" not in data and b"[redacted:OPENAI_API_KEY]" in data


def test_the_records_start_and_duration_are_the_runs(history):
    run = record()
    run.started, run.duration = 1_700_000_000.25, 3.5
    run_id = history.write(run)
    assert run_id is not None and run_id.startswith(f"{1_700_000_000_250:011x}")  # the id sorts by the start
    stored = history.get(run_id)
    assert (stored.started, stored.duration) == (1_700_000_000.25, 3.5)
    assert history.runs(since=1_700_000_000.0)[0].id == run_id


def test_token_counts_no_column_can_hold_are_cut_to_the_largest_one_can(history):
    run = record()
    run.usage = {"prompt_tokens": 10**30, "completion_tokens": -(10**30), "total_tokens": 2**63}
    run_id = history.write(run)  # a hostile server's usage: OverflowError from sqlite3 before
    assert run_id is not None, history.last_error
    stored = history.get(run_id)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (2**63 - 1, -(2**63), 2**63 - 1)
    assert stored.record["usage"]["prompt_tokens"] == 10**30  # the record keeps what the server said
