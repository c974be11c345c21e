"""Fixtures for `flowrun view`: real run records (flows run against the test server), a store of them,
the view server on 127.0.0.1, and headless Chromium from the OS packages driven by Playwright."""

from __future__ import annotations

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
    from flowrunner import Engine, OpenAITransport, load_flow
    from flowrunner.testing import ChatServer

    flow = load_flow(flow_path)
    with ChatServer(**server) as chat:
        chat.enqueue(*replies)
        record = Engine(OpenAITransport(base_url=chat.base_url, api_key="sk-test")).run(flow, inputs)
    return record.to_dict()


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


@dataclass(frozen=True)
class Stored:
    """Shaped as `flowrunner.history.StoredRun`."""

    id: str
    record: dict[str, Any]
    started: float | None = None
    duration: float | None = None
    flow: str = ""
    file: str = ""
    flow_hash: str | None = None
    status: str = "succeeded"
    models: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    error_type: str | None = None
    command: str = "run"


def stored(run_id: str, record: dict[str, Any]) -> Stored:
    usage = record.get("usage") or {}
    models = sorted({step["model"] for step in record["steps"]})
    return Stored(run_id, record, started=record.get("started"), duration=record.get("duration"),
                  flow=record["flow"], file=record["file"], status=record["status"], models=models,
                  prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                  total_tokens=usage.get("total_tokens", 0), cost=record.get("cost"),
                  error_type=(record.get("error") or {}).get("type"))


class MemoryStore:
    """The history's read API over a list (newest first), as `History(readonly=True)` offers it."""

    def __init__(self, runs: list[Stored]):
        self._runs = runs

    def runs(self, *, flow: str | None = None, status: str | None = None, since: Any = None, limit: int = 20,
             search: str | None = None) -> list[Stored]:
        import json

        found = [r for r in self._runs if (flow is None or r.flow == flow) and (status is None or r.status == status)
                 and (search is None or search in json.dumps(r.record))]
        return found[:limit]

    def get(self, id_or_prefix: str) -> Stored:
        matches = [r for r in self._runs if r.id.startswith(id_or_prefix)]
        if len(matches) != 1:
            raise LookupError(f"no run {id_or_prefix!r}" if not matches else f"{id_or_prefix!r} is ambiguous")
        return matches[0]


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
