"""Makes docs/timeline.png, README's picture of `flowrun view`: a real run of flows/weather.yaml against the
project's test server (enforcing one request a second, its first answer a 500 that is retried), written to a
run history in a temporary folder, served by `flowrun view`'s server and photographed by headless Chromium.

    python docs/timeline.py        # needs the test extra (playwright) and Debian's chromium

The process first runs flows/hello.yaml once, as a batch or a chat session would have, so the OpenAI SDK is
loaded and warm (a run's clock starts after that warm-up; the first request of a fresh process still pays for
opening its connection).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from flowrunner import Engine, OpenAITransport, load_flow
from flowrunner.history import History, diff_runs
from flowrunner.testing import ChatServer, Limits, faults
from flowrunner.view import ViewServer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def main(out: Path = ROOT / "docs" / "timeline.png") -> None:
    with tempfile.TemporaryDirectory() as home:
        history = History(Path(home) / "history.db")
        weather = ROOT / "flows" / "weather.yaml"
        with ChatServer(latency=0.15, limits=Limits(rpm=60, window=1.0)) as server:
            engine = Engine(OpenAITransport(base_url=server.base_url, api_key="sk-test"))
            engine.run(load_flow(ROOT / "flows" / "hello.yaml"), {})  # the SDK loaded, as in a batch
            server.enqueue(faults.server_error())
            record = engine.run(load_flow(weather), {"question": "What's the weather in Boston and Tokyo?"})
        run_id = history.write(record, flow_text=weather.read_text(encoding="utf-8"))
        history.close()
        assert run_id is not None, history.last_error
        path = history.path
        with ViewServer(lambda: History(path, readonly=True), diff=diff_runs) as view, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(view.url)
            page.goto(f"http://127.0.0.1:{view.port}/run/{run_id}")
            page.locator("a.bar.round").first.click()
            page.evaluate("window.scrollTo(0, 0)")
            bottom = page.locator("details#round-0-0 table.attempts").bounding_box()
            clip = {"x": 0, "y": 0, "width": 1280, "height": bottom["y"] + bottom["height"] + 24}
            page.screenshot(path=str(out), clip=clip, full_page=True)
            browser.close()
    print(f"wrote {out} (run {run_id})", file=sys.stderr)


if __name__ == "__main__":
    main()
