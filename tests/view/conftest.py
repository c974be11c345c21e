"""Fixtures for `flowrun view`: real run records (flows run against the test server), a store of them,
the view server on 127.0.0.1, and headless Chromium from the OS packages driven by Playwright."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def run_flow(flow_path: Path, inputs: dict[str, Any], *replies: Any, **server: Any) -> dict[str, Any]:
    """A real run record: the flow run in-process against the project's test server (queued `replies` first)."""
    return run_flow_record(flow_path, inputs, *replies, **server).to_dict()


def run_flow_record(flow_path: Path, inputs: dict[str, Any], *replies: Any, **server: Any) -> Any:
    """The same, as the engine's RunRecord (what the history writes)."""
    from flowrunner import Engine, OpenAITransport, load_flow
    from flowrunner.testing import ChatServer

    flow = load_flow(flow_path)
    with ChatServer(**server) as chat:
        chat.enqueue(*replies)
        return Engine(OpenAITransport(base_url=chat.base_url, api_key="sk-test")).run(flow, inputs)


def with_timing(record: dict[str, Any], t0: float = 1_790_000_000.0) -> dict[str, Any]:
    """The record with timing as the `cost` branch records it, laid out by hand so each bar's length is known:
    per round a 0.3 s rate-limit wait, each attempt 0.1 s (a failed one then 0.4 s of back-off), each call 0.05 s."""
    timed = copy.deepcopy(record)
    now = t0 + 0.01
    timed["started"] = t0
    for step in timed["steps"]:
        step["started"] = now
        step_cost = 0.0
        for round_ in step["rounds"]:
            round_.update(started=now, waited_rate_limit=0.3, waited_retry=0.0, ttft=None, cost=0.00012)
            now += 0.3
            for attempt in round_["attempts"]:
                attempt.update(started=now, duration=0.1)
                now += 0.1
                if attempt["error"] is not None:
                    attempt["slept"] = 0.4
                    round_["waited_retry"] += 0.4
                    now += 0.4
            round_["sent"] = round_["attempts"][-1]["started"]
            round_["latency"] = 0.1
            for call in round_["calls"]:
                call.update(started=now, duration=0.05)
                now += 0.05
            step_cost += 0.00012
        step["duration"] = now - step["started"]
        step["cost"] = step_cost
    timed["duration"] = now - t0 + 0.01
    timed["cost"] = sum(step["cost"] for step in timed["steps"])
    return timed


def clean_env_for(home: Path) -> dict[str, str]:
    """A newcomer's environment (no key, no server, not CI) whose history lives in `home`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FLOWRUN_NO_LOG")}
    return {**env, "FLOWRUN_HOME": str(home)}


@dataclass
class Runs:
    """A run history database written by `History.write`, and the ids of its runs by what they are."""

    path: Path
    ids: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def serve(self) -> Iterator[Any]:
        """`flowrun view`'s server over this history (opened read-only), serving until the block ends."""
        from flowrunner.history import History, diff_runs
        from flowrunner.view import ViewServer

        with History(self.path, readonly=True) as history, ViewServer(lambda: history, diff=diff_runs) as server:
            yield server


def rewrite(path: Path, run_id: str, record: dict[str, Any]) -> None:
    """Replace a stored run's record (and its timing and cost columns) with `record`: how a run from an older
    flowrunner (no timing) or one with timing laid out by hand gets into a real history database."""
    import sqlite3

    from flowrunner._json import dumps

    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE runs SET record = ?, started = ?, duration = ?, cost = ? WHERE id = ?",
                           (dumps(record), record.get("started"), record.get("duration"), record.get("cost"), run_id))
    connection.close()


EVIL = "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\"> & <b>bold</b>"


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """A real history: the weather flow (two cities, its first request a 500 that is retried, the server
    enforcing one request a second) as it ran, the same run with timing laid out by hand (`with_timing`)
    and without any (an older flowrunner's), weather for one city, hello answering markup, hello failing 401."""
    from flowrunner._record import without_timing
    from flowrunner.history import History
    from flowrunner.testing import Limits, faults

    path = tmp_path_factory.mktemp("history") / "history.db"
    history = History(path)
    weather = ROOT / "flows" / "weather.yaml"
    hello = ROOT / "flows" / "hello.yaml"
    made = Runs(path)

    def write(name: str, record: Any, flow: Path) -> None:
        run_id = history.write(record, flow_text=flow.read_text(encoding="utf-8"))
        assert run_id is not None, history.last_error
        made.ids[name] = run_id

    two = {"question": "What's the weather in Boston and Tokyo?"}
    real = run_flow_record(weather, two, faults.server_error(), limits=Limits(rpm=60, window=1.0), latency=0.05)
    write("real", real, weather)
    write("timed", real, weather)
    rewrite(path, made.ids["timed"], with_timing(without_timing(real.to_dict())))
    write("old", real, weather)
    rewrite(path, made.ids["old"], without_timing(real.to_dict()))
    write("tokyo", run_flow_record(weather, {"question": "What's the weather in Tokyo?"}), weather)
    write("evil", run_flow_record(hello, {}, faults.completion(EVIL)), hello)
    write("failed", run_flow_record(hello, {}, faults.invalid_api_key()), hello)
    history.close()
    return made


@pytest.fixture(scope="session")
def weather_record() -> dict[str, Any]:
    """The weather flow, two cities (parallel calls), the first request failing with a 500 and retried."""
    from flowrunner.testing import faults

    return run_flow(ROOT / "flows" / "weather.yaml", {"question": "What's the weather in Boston and Tokyo?"},
                    faults.server_error())


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $FLOWRUN_ARTIFACTS when set (CI keeps them), else the test's tmp dir."""
    folder = Path(os.environ.get("FLOWRUN_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium from the OS packages (never a downloaded browser)."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the browser tests: apt-get install -y chromium (.ci/run does)")
        pytest.skip("no Chromium at /usr/bin/chromium: `apt-get install chromium` to run the browser tests")
    playwright_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
    if playwright_api is None:
        import playwright.sync_api as playwright_api
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                         args=CHROMIUM_ARGS)
        yield browser
        browser.close()
