"""`flowrun runs` and the run history as a user meets it: real `flowrun` processes against the test server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowrunner.testing import ChatServer

from conftest import ROOT, clean_env

ECHO = """\
name: echo
model: m
inputs:
  question: {type: string, default: "Say hi"}
steps:
  - id: reply
    messages: [{role: user, content: "{{ inputs.question }}"}]
tests:
  - name: hi
    inputs: {question: hi}
    expect:
      outputs: {reply: {contains: "Hello"}}
"""


def flowrun(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = clean_env(**env)
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, env=full, timeout=120)


@pytest.fixture
def echo(tmp_path: Path) -> str:
    path = tmp_path / "echo.yaml"
    path.write_text(ECHO)
    return str(path)


@pytest.fixture
def db(_history_home: Path) -> Path:
    return _history_home / "history.db"


def stored(db: Path) -> list[dict[str, object]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        rows = [dict(row) for row in connection.execute("SELECT * FROM runs ORDER BY rowid")]
    connection.close()
    return rows


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.server
def test_a_run_is_kept_then_listed_shown_and_diffed(echo, db):
    with ChatServer() as server:
        first = flowrun(echo, "-i", "question=first", "--base-url", server.base_url)
        second = flowrun(echo, "-i", "question=second", "--base-url", server.base_url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == "You said: first\n" and warnings(first.stderr) == []
    rows = stored(db)
    assert [row["command"] for row in rows] == ["run", "run"]
    assert rows[0]["flow"] == "echo" and rows[0]["file"] == echo and rows[0]["status"] == "succeeded"
    assert json.loads(str(rows[0]["models"])) == ["m"] and int(str(rows[0]["total_tokens"])) > 0
    assert isinstance(rows[0]["duration"], float) and isinstance(rows[0]["started"], float)
    import hashlib
    assert rows[0]["flow_hash"] == hashlib.sha256(ECHO.encode()).hexdigest()
    first_id, second_id = str(rows[0]["id"]), str(rows[1]["id"])

    listing = flowrun("runs")
    assert listing.returncode == 0, listing.stderr
    header, *lines = listing.stdout.splitlines()
    assert header.split() == ["ID", "STARTED", "FLOW", "STATUS", "DURATION", "TOKENS", "COST"]
    assert [line.split()[0] for line in lines] == [second_id[:12], first_id[:12]]  # newest first
    assert all("echo" in line and "succeeded" in line for line in lines)
    assert all(line.split()[5] != "-" for line in lines)  # the duration

    show = flowrun("runs", "show", first_id[:14])
    assert show.returncode == 0, show.stderr
    assert f"run {first_id}" in show.stdout and "status    succeeded" in show.stdout
    assert f"summary   1 step, 1 round, 0 calls, {rows[0]['total_tokens']} tokens" in show.stdout
    assert show.stdout.endswith("\nYou said: first\n")  # as flowrun printed it
    record = json.loads(flowrun("runs", "show", first_id, "--json").stdout)
    assert record["inputs"] == {"question": "first"} and record["outputs"] == {"reply": "You said: first"}

    diff = flowrun("runs", "diff", first_id, second_id)
    assert diff.returncode == 0, diff.stderr
    assert "flow file: the same text" in diff.stdout
    assert "inputs:\n  question:\n    A first\n    B second\n" in diff.stdout
    assert "outputs:\n  reply:\n    A You said: first\n    B You said: second\n" in diff.stdout
    assert "step reply:\n  round 1.content: A 'You said: first', B 'You said: second'" in diff.stdout
    same = flowrun("runs", "diff", first_id, first_id)
    assert "no differences besides ids and times" in same.stdout


@pytest.mark.server
def test_the_list_is_filtered_by_flow_status_time_text_and_count(echo, db, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(ECHO.replace("name: echo", "name: other"))
    with ChatServer(api_key="sk-the-right-key-1234") as server:
        for question in ("one", "two"):
            assert flowrun(echo, "-i", f"question={question}", "--base-url", server.base_url,
                           OPENAI_API_KEY="sk-the-right-key-1234").returncode == 0
        failed = flowrun(str(other), "--base-url", server.base_url, OPENAI_API_KEY="sk-a-wrong-key-5678")
    assert failed.returncode == 1 and warnings(failed.stderr) == []

    def listed(*args: str) -> list[str]:
        done = flowrun("runs", *args)
        assert done.returncode == 0, done.stderr
        return [line.split()[3] for line in done.stdout.splitlines()[1:]]  # id, date, time, flow

    assert listed() == ["other", "echo", "echo"]
    assert listed("--flow", "echo") == ["echo", "echo"]
    assert listed("--flow", str(other)) == ["other"]  # by file too
    assert listed("--status", "failed") == ["other"]
    assert listed("--since", "1h") == ["other", "echo", "echo"]
    assert listed("--since", "2999-01-01") == []
    assert listed("--search", "two") == ["echo"]
    assert listed("-n", "1") == ["other"]
    assert "no runs match" in flowrun("runs", "--since", "2999-01-01").stderr
    failure = flowrun("runs", "show", str(stored(db)[-1]["id"]))
    assert "status    failed (APIError)" in failure.stdout and "error in step 'reply': HTTP 401" in failure.stdout


def test_usage_errors_say_what_was_expected(db):
    done = flowrun("runs", "--since", "yesterday")
    assert done.returncode == 2 and "expected a time ago like 30m, 2h, 3d or 1w" in done.stderr
    done = flowrun("runs", "show", "abcd")
    assert done.returncode == 2 and "error: no run 'abcd'" in done.stderr and "Traceback" not in done.stderr
    assert not db.exists()  # reading created nothing
    assert flowrun("runs").stderr.startswith("no runs yet")
    done = flowrun("runs", "path")
    assert done.returncode == 0 and done.stdout == f"{db}\n"


@pytest.mark.server
def test_no_log_and_the_environment_variable_keep_nothing(echo, db):
    with ChatServer() as server:
        assert flowrun(echo, "--no-log", "--base-url", server.base_url).returncode == 0
        assert flowrun(echo, "--base-url", server.base_url, FLOWRUN_NO_LOG="1").returncode == 0
        assert flowrun("chat", echo, "--no-log", "--base-url", server.base_url, stdin="hi\n").returncode == 0
    assert not db.exists()
    assert "FLOWRUN_NO_LOG=1" in flowrun("run", "--help").stdout


@pytest.mark.server
def test_each_chat_turn_is_kept_as_a_one_step_run(echo, db):
    with ChatServer() as server:
        done = flowrun("chat", echo, "--base-url", server.base_url, stdin="hello\nagain\n")
    assert done.returncode == 0, done.stderr
    rows = stored(db)
    assert [row["command"] for row in rows] == ["chat", "chat", "chat"]  # the step's own user message first
    records = [json.loads(str(row["record"])) for row in rows]
    assert [r["outputs"] for r in records] == [{"reply": "You said: Say hi"}, {"reply": "Hello! How can I help you today?"},
                                               {"reply": "You said: again"}]
    assert all(len(r["steps"]) == 1 and r["status"] == "succeeded" for r in records)


@pytest.mark.server
def test_test_and_batch_keep_their_runs_only_with_log(echo, db, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": i, "question": f"q{i}"}) + "\n" for i in range(24)))
    with ChatServer() as server:
        assert flowrun("test", echo, "--record", "--base-url", server.base_url).returncode == 0
        assert flowrun("batch", echo, "--inputs", str(inputs), "--out", str(tmp_path / "a.jsonl"),
                       "--base-url", server.base_url).returncode == 0
        assert not db.exists()
        assert flowrun("test", echo, "--log").returncode == 0  # replays the cassette just recorded
        done = flowrun("batch", echo, "--inputs", str(inputs), "--out", str(tmp_path / "b.jsonl"), "-c", "8",
                       "--base-url", server.base_url, "--log")
    assert done.returncode == 0, done.stderr
    rows = stored(db)
    assert [row["command"] for row in rows].count("test") == 1
    batch = [json.loads(str(row["record"])) for row in rows if row["command"] == "batch"]
    assert sorted(r["inputs"]["question"] for r in batch) == sorted(f"q{i}" for i in range(24))  # 8 workers, none lost


@pytest.mark.server
def test_runs_in_eight_processes_at_once_are_all_kept(echo, db):
    with ChatServer() as server:
        env = clean_env()
        processes = [subprocess.Popen([sys.executable, "-m", "flowrunner._cli", echo, "-i", f"question=p{i}",
                                       "--base-url", server.base_url], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
        try:
            results = [(process.communicate(timeout=120), process.returncode) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
    for (out, err), code in results:
        assert code == 0 and warnings(err) == [], err
    questions = sorted(json.loads(str(row["record"]))["inputs"]["question"] for row in stored(db))
    assert questions == [f"p{i}" for i in range(8)]


def _corrupt(db: Path) -> None:
    db.write_bytes(b"not a database at all " * 200)


def _locked(db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.mark.server
@pytest.mark.parametrize("problem", ["corrupt", "locked", "read-only", "unwritable folder"])
def test_a_database_that_cannot_be_written_is_a_warning_and_the_run_goes_on(echo, db, problem):
    holder = None
    env = {}
    with ChatServer() as server:
        assert flowrun(echo, "--base-url", server.base_url).returncode == 0  # the history exists
        if problem == "corrupt":
            _corrupt(db)
        elif problem == "locked":
            holder = _locked(db)
        elif problem == "read-only":
            _make_read_only(db)
        else:
            (db.parent / "a-file").write_text("")
            env["FLOWRUN_HOME"] = str(db.parent / "a-file" / "history")
        try:
            done = flowrun(echo, "-i", "question=still", "--base-url", server.base_url, **env)
            failing = flowrun(echo, "--base-url", "http://127.0.0.1:9/v1", "--timeout", "1", **env)
        finally:
            if holder is not None:
                holder.execute("ROLLBACK")
                holder.close()
            if problem == "read-only":
                _make_writable(db)
    assert done.returncode == 0 and done.stdout == "You said: still\n", done.stderr
    (warning,) = warnings(done.stderr)
    assert warning.startswith("warning: the run was not kept in the history (") and "Traceback" not in done.stderr
    assert failing.returncode == 1 and len(warnings(failing.stderr)) == 1  # a failed run exits as it would


def _make_read_only(db: Path) -> None:
    if os.geteuid() == 0:  # root writes whatever the mode says: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("running as root, and chattr cannot make the file immutable here")
    else:
        db.chmod(0o444)


def _make_writable(db: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    db.chmod(0o644)


@pytest.mark.server
def test_no_secret_reaches_the_database_file(tmp_path, db):
    key, token = "sk-history-secret-key-0123456789", "tok-history-secret-9876543210"
    flow = tmp_path / "secret.yaml"
    flow.write_text(textwrap.dedent("""\
        model: m
        inputs:
          token: {type: string, env: HISTORY_TEST_TOKEN}
          question: {type: string}
        steps:
          - id: reply
            messages: [{role: user, content: "{{ inputs.question }} {{ inputs.token }}"}]
        """))
    with ChatServer(api_key=key) as server:
        done = flowrun(str(flow), "-i", f"question=my key is {key}", "--base-url", server.base_url,
                       OPENAI_API_KEY=key, HISTORY_TEST_TOKEN=token)
        chat = flowrun("chat", str(flow), "-i", f"question={key}", "--base-url", server.base_url,
                       OPENAI_API_KEY=key, HISTORY_TEST_TOKEN=token, stdin=f"echo {token}\n")
    assert done.returncode == 0 and chat.returncode == 0, done.stderr + chat.stderr
    record = json.loads(str(stored(db)[0]["record"]))
    assert record["inputs"]["token"] == "[redacted:HISTORY_TEST_TOKEN]"
    assert "[redacted:OPENAI_API_KEY]" in record["outputs"]["reply"]  # the answer echoed the key: kept redacted
    files = [path for path in db.parent.iterdir() if path.name.startswith("history.db")]
    data = b"".join(path.read_bytes() for path in files)
    assert len(stored(db)) == 3 and data  # the run, and the chat's two turns
    for secret in (key, token):
        assert secret.encode() not in data


@pytest.mark.server
def test_a_failed_chat_turn_is_kept_as_a_failed_run(echo, db):
    with ChatServer(api_key="sk-the-right-key-1234") as server:
        done = flowrun("chat", echo, "--base-url", server.base_url, stdin="hello\n", OPENAI_API_KEY="sk-wrong-key-5678")
    assert done.returncode == 0 and "HTTP 401" in done.stderr
    rows = stored(db)
    assert [(row["command"], row["status"], row["error_type"]) for row in rows] == [("chat", "failed", "APIError")] * 2
    record = json.loads(str(rows[-1]["record"]))
    assert record["error"]["step"] == "reply" and "HTTP 401" in record["error"]["message"] and record["outputs"] == {}


def test_the_list_shows_a_cost_of_fractions_of_a_cent_as_flowrun_run_said_it(db: Path) -> None:
    done = flowrun("flows/weather.yaml")  # replays its cassette: gpt-4o-mini, priced by the table
    assert done.returncode == 0, done.stderr
    said = done.stderr.strip().splitlines()[-1]  # `158 tokens (145 prompt, 13 completion), $0.000030`
    amount = said.rsplit(", ", 1)[1]
    assert amount.startswith("$") and amount != "$0.000000"
    listed = flowrun("runs").stdout.splitlines()[1]
    assert listed.split()[-1] == amount  # not rounded away to $0.0000


def test_a_long_multiline_output_is_diffed_in_bounded_lines() -> None:
    from flowrunner._cli.runs import _value_lines

    a = "\n".join(f"line {i}" for i in range(1000))
    b = "\n".join(f"line {i}" if i % 2 else f"changed {i}" for i in range(1000))
    lines = _value_lines("output answer", a, b)
    assert lines[0] == "  output answer:" and "    -line 0" in lines and "    +changed 0" in lines
    assert not any(line.strip().startswith("@@") for line in lines)
    assert len(lines) <= 202 and lines[-1].strip().endswith("more lines)")
