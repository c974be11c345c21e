"""`flowrun batch --via batch-api` as a process: kill -9 in every phase, then --resume; Ctrl-C; --status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import FLOWS, ROOT, clean_env
from flowrunner.testing import BatchSettings, ChatServer, Reply

pytestmark = pytest.mark.server

CITIES = ["Boston", "Paris", "Tokyo and Osaka", "Lima", "Oslo, Rome"]
N = 40


@pytest.fixture
def still() -> Iterator[ChatServer]:
    """A server whose batch clock moves only when the test moves it: a job can be caught in any phase."""
    with ChatServer(batch=BatchSettings(speed=0)) as server:
        yield server


def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What's the weather in {CITIES[i % 5]}?"}) + "\n"
                            for i in range(N)))
    return path


def command(server: ChatServer, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowrunner._cli", "batch", str(FLOWS / "weather.yaml"), "--inputs",
            str(inputs(tmp_path)), "--out", str(tmp_path / "out.jsonl"), "--via", "batch-api", "--base-url",
            server.base_url, *extra]


def start(server: ChatServer, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(command(server, tmp_path), cwd=ROOT, env=clean_env(FLOWRUN_BATCH_POLL="0.02,0.1"),
                            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
    while not condition():
        assert process.poll() is None, f"flowrun ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.02)


def arrived(server: ChatServer, method: str, path: str, count: int = 1) -> Callable[[], bool]:
    return lambda: sum(1 for r in server.requests if r.method == method and r.path.startswith(path)) >= count


def journaled(tmp_path: Path, kind: str, count: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        path = tmp_path / "out.jsonl.batchapi"
        return path.exists() and path.read_text().count(f'"t": "{kind}"') >= count
    return check


def resume(server: ChatServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """--resume, the test moving the batch clock on until the job ends."""
    server.batches.complete_all()  # whatever is in flight ends while the job is away
    args = command(server, tmp_path, "--resume")
    process = subprocess.Popen(args, cwd=ROOT, env=clean_env(FLOWRUN_BATCH_POLL="0.01,0.02"), text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a hang guard
    while process.poll() is None and time.monotonic() < deadline:
        server.batches.complete_all()
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def every_input_once(tmp_path: Path) -> dict[str, Any]:
    lines = [json.loads(text) for text in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == sorted(f"q{i}" for i in range(N))
    assert {line["status"] for line in lines} == {"succeeded"}
    return {line["key"]: line for line in lines}


def hang(server: ChatServer, route: str) -> None:
    """The next request to `route` gets no answer for a minute (the job is killed while it waits)."""
    server.batches.enqueue(route, Reply(delay=60))


PHASES: dict[str, Callable[[ChatServer, Path, subprocess.Popen[str]], None]] = {}


def phase(fn: Callable[[ChatServer, Path, subprocess.Popen[str]], None]) -> Any:
    PHASES[fn.__name__] = fn
    return fn


@phase
def uploading(server: ChatServer, tmp_path: Path, process: subprocess.Popen[str]) -> None:
    wait_for(arrived(server, "POST", "/v1/files"), process, "an upload")


@phase
def creating(server: ChatServer, tmp_path: Path, process: subprocess.Popen[str]) -> None:
    wait_for(arrived(server, "POST", "/v1/batches"), process, "a create")  # its answer never comes


@phase
def waiting(server: ChatServer, tmp_path: Path, process: subprocess.Popen[str]) -> None:
    wait_for(journaled(tmp_path, "batch"), process, "a batch")
    wait_for(arrived(server, "GET", "/v1/batches/", 2), process, "polls")


@phase
def downloading(server: ChatServer, tmp_path: Path, process: subprocess.Popen[str]) -> None:
    wait_for(journaled(tmp_path, "batch"), process, "a batch")
    hang(server, "content")
    server.batches.complete_all()
    wait_for(arrived(server, "GET", "/v1/files/"), process, "a download")


@phase
def between_waves(server: ChatServer, tmp_path: Path, process: subprocess.Popen[str]) -> None:
    wait_for(journaled(tmp_path, "batch"), process, "wave 1's batch")
    hang(server, "upload")  # wave 2's file
    server.batches.complete_all()
    wait_for(arrived(server, "POST", "/v1/files", 2), process, "wave 2's upload")


@pytest.mark.parametrize("name", sorted(PHASES))
def test_kill_9_in_any_phase_then_resume_runs_every_input_once_and_no_request_twice(
        still: ChatServer, tmp_path: Path, name: str) -> None:
    if name == "uploading":
        hang(still, "upload")
    if name == "creating":
        hang(still, "create")
    process = start(still, tmp_path)
    try:
        PHASES[name](still, tmp_path, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    done = resume(still, tmp_path)
    assert done.returncode == 0, done.stderr
    every_input_once(tmp_path)
    stats = still.batch_stats
    assert stats.submitted_twice() == []
    assert set(stats.custom_ids) == {f"q{i}:{n}" for i in range(N) for n in (1, 2)}
    # No wave's batch was created twice: two waves, one batch each.
    assert stats.batches_created == 2
    assert "batch finished: 40 succeeded, 0 failed" in done.stdout


def test_ctrl_c_leaves_the_batches_running_says_how_to_resume_and_status_shows_them(
        still: ChatServer, tmp_path: Path) -> None:
    process = start(still, tmp_path)
    try:
        wait_for(journaled(tmp_path, "batch"), process, "a batch")
        wait_for(arrived(still, "GET", "/v1/batches/"), process, "a poll")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "leaving 1 batch running: batch_" in err
    assert "--via batch-api --resume" not in err and "--resume" in err and "--via batch-api" in err
    status = subprocess.run([sys.executable, "-m", "flowrunner._cli", "batch", "--status", str(tmp_path / "out.jsonl")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "0 inputs done" in status.stdout
    assert f"wave 1 file 1: {N} requests, batch batch_" in status.stdout and "in flight" in status.stdout
    done = resume(still, tmp_path)
    assert done.returncode == 0, done.stderr
    every_input_once(tmp_path)
    assert still.batch_stats.batches_created == 2 and still.batch_stats.submitted_twice() == []
