"""`flowrun view` in a real browser: headless Chromium (Debian's package) driven by Playwright, over a real run
history. Each test looks at what a person sees and leaves a screenshot under $FLOWRUN_ARTIFACTS (or the test's
tmp dir)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from .conftest import EVIL, Runs
from flowrunner.view import ViewServer

pytestmark = pytest.mark.server


@pytest.fixture
def server(runs: Runs) -> Iterator[ViewServer]:
    with runs.serve() as running:
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


def numbers(texts: list[str]) -> list[int]:
    return [int(text.split()[0].replace(",", "")) for text in texts]


def test_the_printed_url_opens_the_runs_list_and_drops_the_token(page, server, runs, artifacts):
    assert page.url == base(server) + "/"
    assert page.locator("table.runs tbody tr.run").count() == len(runs.ids)
    timed = page.locator(f"tr[data-id='{runs.ids['timed']}']")
    assert timed.locator("td.id").inner_text() == runs.ids["timed"][:12]
    assert timed.locator("td.flow").inner_text() == "weather"
    assert timed.locator("td.status").inner_text() == "succeeded"
    assert timed.locator("td.tokens").inner_text() == "184 tok"
    assert timed.locator("td.cost").inner_text() == "$0.00024"
    assert timed.locator("td.duration").inner_text() == "1.42 s"
    assert page.locator(f"tr[data-id='{runs.ids['failed']}'] td.error").inner_text() == "APIError"
    page.screenshot(path=str(artifacts / "runs.png"), full_page=True)


def test_without_the_token_the_browser_gets_403(chromium, server, runs):
    context = chromium.new_context()
    tab = context.new_page()
    response = tab.goto(f"{base(server)}/run/{runs.ids['real']}")
    assert response.status == 403
    assert "needs the token" in tab.inner_text("main") and "weather" not in tab.inner_text("main")
    context.close()


def navigate(page: Any, action: Callable[[], None]) -> None:
    """Do what loads another page, and wait until it has loaded (a click returns once the navigation starts)."""
    with page.expect_navigation(wait_until="load"):
        action()


def test_the_list_sorts_by_a_column_and_filters(page, server, runs):
    navigate(page, lambda: page.click("th a[data-sort=tokens]"))
    tokens = numbers(page.locator("td.tokens").all_inner_texts())
    assert tokens == sorted(tokens, reverse=True) and tokens[0] == 184 and tokens[-1] == 0
    navigate(page, lambda: page.click("th a[data-sort=tokens]"))
    assert numbers(page.locator("td.tokens").all_inner_texts()) == sorted(tokens)
    page.select_option("select[name=status]", "failed")
    navigate(page, lambda: page.click("form.filters button"))
    assert page.locator("tr.run").evaluate_all("rows => rows.map(r => r.dataset.id)") == [runs.ids["failed"]]
    page.goto(base(server) + "/")
    page.select_option("select[name=flow]", "hello")
    navigate(page, lambda: page.click("form.filters button"))
    assert sorted(page.locator("td.flow").all_inner_texts()) == ["hello", "hello"]
    page.goto(base(server) + "/")
    page.fill("input[name=q]", "Tokyo")
    navigate(page, lambda: page.press("input[name=q]", "Enter"))
    assert page.locator("tr.run").count() == 4 and set(page.locator("td.flow").all_inner_texts()) == {"weather"}


def check_bars(page: Any) -> None:
    """Every bar starts and spans on the axis as its seconds say, and every shaded wait within its round too."""
    track = page.locator(".row.run .track").bounding_box()
    total = float(page.locator("section.timeline").get_attribute("data-total"))
    for bar in page.locator("section.timeline a.bar").all():
        box = bar.bounding_box()
        start, duration = float(bar.get_attribute("data-start")), float(bar.get_attribute("data-duration"))
        assert box["x"] - track["x"] == pytest.approx(start / total * track["width"], abs=1.5)
        assert box["width"] == pytest.approx(max(2.0, duration / total * track["width"]), abs=1.5)
        for segment in bar.locator(".seg").all():
            seconds = float(segment.get_attribute("data-duration"))
            assert segment.bounding_box()["width"] == pytest.approx(max(1.0, seconds / total * track["width"]), abs=1.5)


def test_a_run_is_a_timeline_of_bars_as_long_as_what_they_stand_for(page, server, runs, artifacts):
    page.goto(f"{base(server)}/run/{runs.ids['timed']}")
    bars = page.locator("section.timeline a.bar")
    assert [b.get_attribute("class").split()[1] for b in bars.all()] == ["run", "step", "round", "call", "call", "round"]
    check_bars(page)
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
    assert page.locator("dd.cost").inner_text() == "$0.00024" and page.locator("dd.tokens").inner_text().startswith("184 tok")
    page.screenshot(path=str(artifacts / "timeline-laid-out.png"), full_page=True)


def test_a_real_runs_timeline_shows_its_retry_and_its_waits(page, server, runs, artifacts):
    """The run as it ran: the test server enforcing one request a second, the first answer a 500."""
    page.goto(f"{base(server)}/run/{runs.ids['real']}")
    check_bars(page)
    first_round = page.locator("a.bar.round").first
    kinds = first_round.locator(".seg").evaluate_all("s => s.map(e => e.classList[1])")
    assert kinds[kinds.index("failed") + 1] == "retry" and kinds[-1] == "attempt"
    assert page.locator("a.bar.round").count() == 2 and page.locator("a.bar.call").count() == 2
    page.screenshot(path=str(artifacts / "timeline-real.png"), full_page=True)


def test_clicking_a_round_opens_its_calls_answer_and_attempts(page, server, runs, artifacts):
    page.goto(f"{base(server)}/run/{runs.ids['real']}")
    assert page.locator("details.round[open]").count() == 0
    page.locator("a.bar.round").first.click()
    first = page.locator("details#round-0-0")
    assert first.get_attribute("open") is not None and first.is_visible()
    calls = first.locator("table.calls tbody tr")
    assert calls.count() == 2
    assert '"location": "Boston"' in calls.nth(0).locator("pre.arguments").inner_text()
    assert '"temperature": "72"' in calls.nth(0).locator("pre.result").inner_text()
    assert '"location": "Tokyo"' in calls.nth(1).locator("pre.arguments").inner_text()
    attempts = first.locator("table.attempts tbody tr")
    assert attempts.count() == 2
    assert attempts.nth(0).locator("td").all_inner_texts()[:3] == [
        "1", "500", "APIError: HTTP 500: The server had an error while processing your request. Sorry about that!"]
    page.locator("a.bar.round").nth(1).click()
    second = page.locator("details#round-0-1")
    assert second.get_attribute("open") is not None and first.get_attribute("open") is None
    assert "location Tokyo, temperature 72" in second.locator("pre.answer").inner_text()
    assert page.url.endswith("#round-0-1")
    page.screenshot(path=str(artifacts / "round.png"), full_page=True)


def test_a_run_without_timing_says_so_and_still_shows_its_rounds(page, server, runs):
    page.goto(f"{base(server)}/run/{runs.ids['old']}")
    assert page.locator("section.timeline").count() == 0
    assert "recorded without timing" in page.locator(".no-timeline").inner_text()
    page.locator("details#round-0-1 summary").click()
    assert "location Boston" in page.locator("details#round-0-1 pre.answer").inner_text()


def test_model_output_is_text_on_the_page_never_markup(page, server, runs, artifacts):
    page.goto(f"{base(server)}/run/{runs.ids['evil']}")
    page.locator("details#round-0-0 summary").click()
    assert page.locator("details#round-0-0 pre.answer").inner_text() == EVIL
    assert page.locator("main script, main img, main b").count() == 0
    assert page.title() != "owned" and page.dialogs == []
    page.screenshot(path=str(artifacts / "escaped.png"), full_page=True)


def test_two_runs_picked_in_the_list_are_compared_side_by_side(page, server, runs, artifacts):
    button = page.locator("#compare-button")
    assert button.is_disabled()
    page.check(f"tr[data-id='{runs.ids['real']}'] input[type=checkbox]")
    assert button.is_disabled()
    page.check(f"tr[data-id='{runs.ids['tokyo']}'] input[type=checkbox]")
    assert button.is_enabled()
    button.click()
    page.wait_for_url("**/diff?**")
    rows = {row.locator("th").inner_text(): row for row in page.locator("table.diff tbody tr").all()}
    assert "changed" in rows["inputs"].get_attribute("class")
    assert "Boston and Tokyo" in rows["inputs"].locator("td.a").inner_text()
    assert "changed" in rows["output answer"].get_attribute("class")
    assert "same" in rows["flow"].get_attribute("class")
    assert "get_current_weather(location=Boston)" in rows["step answer: calls"].locator("td.a").inner_text()
    # history's diff_runs, rendered: what changed, with each round's first difference and its unified diff
    changes = {row.locator("th").inner_text(): row for row in page.locator("table.changes.inputs tbody tr").all()}
    assert "What's the weather in Tokyo?" in changes["question"].locator("td.b").inner_text()
    calls = page.locator("table.changes.calls tbody tr").first.locator("td").all_inner_texts()
    assert calls == ["2", "1"]
    first_round = page.locator(".rounddiff").first
    assert "round 1" in first_round.locator(".round-title").inner_text()
    assert first_round.locator("pre.udiff .del").count() > 0 and first_round.locator("pre.udiff .add").count() > 0
    page.screenshot(path=str(artifacts / "diff.png"), full_page=True)
