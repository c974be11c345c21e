"""Replaying a cassette sends nothing, so nothing is paced: a declared rpm costs a replay no time."""

from __future__ import annotations

import shutil

import pytest

from flowrunner import Engine, OpenAITransport, load_flow, use_cassette
from flowrunner._ratelimit import RateLimiter
from flowrunner._record import without_timing

from conftest import FLOWS


def paced_weather(tmp_path):
    """flows/weather.yaml (two requests: a call, then the answer) with `rate_limit: {rpm: 3}`."""
    shutil.copy(FLOWS / "weather_tools.py", tmp_path / "weather_tools.py")
    text = (FLOWS / "weather.yaml").read_text().replace("\nsteps:", "\nrate_limit: {rpm: 3}\nsteps:", 1)
    (tmp_path / "weather.yaml").write_text(text)
    return load_flow(tmp_path / "weather.yaml")


def run_counting_waits(flow, cassette, mode, base_url=None):
    """Run `flow` under `cassette` with a limiter whose sleeps are recorded, not slept."""
    waits: list[float] = []
    limiter = RateLimiter(sleep=waits.append)
    with use_cassette(cassette, mode):
        record = Engine(OpenAITransport(base_url=base_url), limiter=limiter, sleep=waits.append).run(flow)
    assert record.status == "succeeded", record.error
    return record, waits


@pytest.mark.server
@pytest.mark.parametrize("mode", ["none", "once"])
def test_a_replayed_run_is_not_paced_but_its_recording_was(tmp_path, chat_server, mode):
    flow = paced_weather(tmp_path)
    cassette = tmp_path / "cassettes" / "weather.yaml"
    recorded, waits = run_counting_waits(flow, cassette, "once", chat_server.base_url)
    assert len(recorded.steps[0].rounds) == 2
    assert any(wait > 10 for wait in waits)  # recording sends: 60/3 s between the two requests

    replayed, waits = run_counting_waits(flow, cassette, mode)
    assert without_timing(replayed.to_dict()) == without_timing(recorded.to_dict())
    assert [wait for wait in waits if wait > 0] == []


@pytest.mark.server
def test_a_replayed_retry_does_not_sleep_but_its_recording_did(tmp_path, chat_server):
    from flowrunner.testing import faults

    flow = load_flow(FLOWS / "hello.yaml")
    cassette = tmp_path / "hello.yaml"
    chat_server.enqueue(faults.server_error(), faults.completion("hi"))
    recorded, waits = run_counting_waits(flow, cassette, "once", chat_server.base_url)
    assert [attempt.status for attempt in recorded.steps[0].rounds[0].attempts] == [500, 200]
    assert any(wait > 0 for wait in waits)  # the backoff after the 500

    replayed, waits = run_counting_waits(flow, cassette, "none")
    assert replayed.outputs == recorded.outputs
    assert [attempt.status for attempt in replayed.steps[0].rounds[0].attempts] == [500, 200]
    assert [wait for wait in waits if wait > 0] == []
