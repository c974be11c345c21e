"""`flowrun view` in a real browser: headless Chromium (Debian's package) driven by Playwright. Each test
looks at what a person sees and leaves a screenshot under $FLOWRUN_ARTIFACTS (or the test's tmp dir)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from conftest import ROOT, MemoryStore, run_flow, stored, with_timing
from flowrunner._record import without_timing
from flowrunner.testing import faults
from flowrunner.view import ViewServer

pytestmark = pytest.mark.server
EVIL = "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\"> answer"


@pytest.fixture(scope="module")
def store(weather_record: dict[str, Any]) -> MemoryStore:
    evil = run_flow(ROOT / "flows" / "hello.yaml", {}, faults.completion(EVIL))
    failed = run_flow(ROOT / "flows" / "hello.yaml", {}, faults.invalid_api_key())
    slower = with_timing(weather_record)
    slower["cost"], slower["outputs"] = 0.5, {"answer": "something else"}
    return MemoryStore([stored("aaaa1111", with_timing(weather_record)), stored("bbbb2222", without_timing(weather_record)),
                        stored("cccc3333", evil), stored("dddd4444", failed), stored("eeee5555", slower)])


@pytest.fixture
def server(store: MemoryStore) -> Iterator[ViewServer]:
    with ViewServer(lambda: store) as running:
        yield running


@pytest.fixture
def page(chromium: Any, server: ViewServer) -> Iterator[Any]:
    """A page that has opened the printed URL (so it holds the cookie), at the runs list."""
    context = chromium.new_context(viewport={"width": 1300, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.goto(server.url)
    tab.dialogs = dialogs
    yield tab
    context.close()


def base(server: ViewServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_the_printed_url_opens_the_runs_list_and_drops_the_token(page, server, artifacts):
    assert page.url == base(server) + "/"
    rows = page.locator("table.runs tbody tr.run")
    assert rows.count() == 5
    first = page.locator("tr[data-id=aaaa1111]")
    assert first.locator("td.id").inner_text() == "aaaa1111"
    assert first.locator("td.flow").inner_text() == "weather"
    assert first.locator("td.tokens").inner_text() == "184 tok"
    assert first.locator("td.cost").inner_text() == "$0.00024"
    assert first.locator("td.duration").inner_text() == "1.42 s"
    assert page.locator("tr[data-id=dddd4444] td.error").inner_text() == "APIError"
    page.screenshot(path=str(artifacts / "runs.png"), full_page=True)


def test_without_the_token_the_browser_gets_403(chromium, server):
    context = chromium.new_context()
    tab = context.new_page()
    response = tab.goto(base(server) + "/run/aaaa")
    assert response.status == 403
    assert "needs the token" in tab.inner_text("main") and "weather" not in tab.inner_text("main")
    context.close()


def test_the_list_sorts_by_a_column_and_filters(page, server):
    page.click("th a[data-sort=cost]")
    costs = page.locator("td.cost").all_inner_texts()
    assert costs[:2] == ["$0.5000", "$0.00024"] and set(costs[2:]) == {"–"}
    page.click("th a[data-sort=cost]")
    assert page.locator("td.cost").all_inner_texts()[:2] == ["$0.00024", "$0.5000"]
    page.select_option("select[name=status]", "failed")
    page.click("form.filters button")
    assert page.locator("td.id").all_inner_texts() == ["dddd4444"]
    page.goto(base(server) + "/")
    page.fill("input[name=q]", "Tokyo")
    page.press("input[name=q]", "Enter")
    assert sorted(page.locator("td.id").all_inner_texts()) == ["aaaa1111", "bbbb2222", "eeee5555"]


def test_a_run_is_a_timeline_of_bars_as_long_as_what_they_stand_for(page, server, artifacts):
    page.goto(base(server) + "/run/aaaa")
    track = page.locator(".row.run .track").bounding_box()
    total = float(page.locator("section.timeline").get_attribute("data-total"))
    bars = page.locator("section.timeline a.bar")
    assert [b.get_attribute("class").split()[1] for b in bars.all()] == ["run", "step", "round", "call", "call", "round"]
    for bar in bars.all():
        box = bar.bounding_box()
        start, duration = float(bar.get_attribute("data-start")), float(bar.get_attribute("data-duration"))
        assert box["x"] - track["x"] == pytest.approx(start / total * track["width"], abs=1.5)
        assert box["width"] == pytest.approx(max(2.0, duration / total * track["width"]), abs=1.5)
    first_round = page.locator("a.bar.round").first
    width = first_round.bounding_box()["width"]
    waits = {seg.get_attribute("class").split()[1]: seg.bounding_box()["width"]
             for seg in first_round.locator(".seg").all()}
    # round 1 took 0.9 s: 0.3 s rate-limit wait, 0.1 s failed attempt, 0.4 s retry wait, 0.1 s answer
    assert waits["rate_limit"] == pytest.approx(width / 3, abs=1.5)
    assert waits["retry"] == pytest.approx(width * 4 / 9, abs=1.5)
    assert waits["failed"] == pytest.approx(width / 9, abs=1.5)
    metrics = page.locator(".row.round .metrics").first.inner_text()
    assert "900 ms" in metrics and "74 tok" in metrics and "$0.00012" in metrics
    assert "limit 300 ms" in metrics and "retry 400 ms" in metrics
    assert page.locator(".row.run .metrics").inner_text().split() == ["1.42", "s", "184", "tok", "$0.00024"]
    page.screenshot(path=str(artifacts / "timeline.png"), full_page=True)


def test_clicking_a_round_opens_its_request_calls_and_answer(page, server, artifacts):
    page.goto(base(server) + "/run/aaaa")
    assert page.locator("details.round[open]").count() == 0
    page.locator("a.bar.round").first.click()
    first = page.locator("details#round-0-0")
    assert first.get_attribute("open") is not None and first.is_visible()
    calls = first.locator("table.calls tbody tr")
    assert calls.count() == 2
    assert '"location": "Boston"' in calls.nth(0).locator("pre.arguments").inner_text()
    assert '"temperature": "72"' in calls.nth(0).locator("pre.result").inner_text()
    attempts = first.locator("table.attempts tbody tr")
    assert attempts.nth(0).inner_text().split("\t")[:2] == ["1", "500"] and "400 ms" in attempts.nth(0).inner_text()
    page.locator("a.bar.round").nth(1).click()
    second = page.locator("details#round-0-1")
    assert second.get_attribute("open") is not None and first.get_attribute("open") is None
    assert "location Tokyo, temperature 72" in second.locator("pre.answer").inner_text()
    assert page.url.endswith("#round-0-1")
    page.screenshot(path=str(artifacts / "round.png"), full_page=True)


def test_a_run_without_timing_says_so_and_still_shows_its_rounds(page, server):
    page.goto(base(server) + "/run/bbbb")
    assert page.locator("section.timeline").count() == 0
    assert "recorded without timing" in page.locator(".no-timeline").inner_text()
    page.locator("details#round-0-1 summary").click()
    assert "location Boston" in page.locator("details#round-0-1 pre.answer").inner_text()


def test_model_output_is_text_on_the_page_never_markup(page, server, artifacts):
    page.goto(base(server) + "/run/cccc")
    page.locator("details#round-0-0 summary").click()
    assert page.locator("details#round-0-0 pre.answer").inner_text() == EVIL
    assert page.locator("main script, main img").count() == 0
    assert page.title() != "owned" and page.dialogs == []
    page.screenshot(path=str(artifacts / "escaped.png"), full_page=True)


def test_two_runs_picked_in_the_list_are_compared_side_by_side(page, server, artifacts):
    button = page.locator("#compare-button")
    assert button.is_disabled()
    page.check("tr[data-id=aaaa1111] input[type=checkbox]")
    page.check("tr[data-id=eeee5555] input[type=checkbox]")
    assert button.is_enabled()
    button.click()
    page.wait_for_url("**/diff?**")
    rows = {row.locator("th").inner_text(): row for row in page.locator("table.diff tbody tr").all()}
    assert rows["cost"].locator("td.a").inner_text() == "$0.00024"
    assert rows["cost"].locator("td.b").inner_text() == "$0.5000"
    assert "changed" in rows["cost"].get_attribute("class")
    assert "changed" in rows["output answer"].get_attribute("class")
    assert rows["output answer"].locator("td.b").inner_text() == "something else"
    assert "same" in rows["inputs"].get_attribute("class")
    assert "get_current_weather(location=Tokyo)" in rows["step answer: calls"].locator("td.a").inner_text()
    page.screenshot(path=str(artifacts / "diff.png"), full_page=True)
