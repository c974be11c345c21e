"""`BatchAPIJob` over real HTTP against the test server's Files and Batch API (a fast clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from flowrunner import load_flow
from flowrunner._batch import BatchRunner
from flowrunner._engine import Engine
from flowrunner._exceptions import ConfigError
from flowrunner._transport import OpenAITransport
from flowrunner.batchapi import BatchAPIJob, BatchClient, JobSettings, JobSummary, journal_path, read_journal
from flowrunner.testing import BatchSettings, ChatServer
from flowrunner.testing.faults import error_reply

from conftest import FLOWS

pytestmark = pytest.mark.server

FAST = JobSettings(poll_first=0.01, poll_max=0.05)
ONE_STEP = """
name: shout
model: gpt-4o-mini
inputs: {text: {type: string}}
steps:
  - id: say
    messages:
      - {role: user, content: "Please repeat: {{ inputs.text }}"}
outputs: {said: "{{ steps.say.content }}"}
"""
CITIES = ["Boston", "Paris", "Tokyo and Osaka", "Lima", "Oslo, Rome"]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A server whose batches take no real time: a simulated hour passes in a third of a second."""
    with ChatServer(batch=BatchSettings(speed=10_000)) as server:
        yield server


@pytest.fixture
def still() -> Iterator[ChatServer]:
    """A server whose batch clock moves only when the test moves it."""
    with ChatServer(batch=BatchSettings(speed=0)) as server:
        yield server


def write_inputs(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def weather_inputs(tmp_path: Path, n: int) -> Path:
    return write_inputs(tmp_path / "in.jsonl", [{"id": f"q{i}", "question": f"What's the weather in "
                                                 f"{CITIES[i % len(CITIES)]}?"} for i in range(n)])


def results(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    by_key = {line["key"]: line for line in lines}
    assert len(by_key) == len(lines), "an input was written twice"
    return by_key


def job(server: ChatServer, flow: Any, inputs: Path, out: Path, settings: JobSettings = FAST,
        **kwargs: Any) -> BatchAPIJob:
    return BatchAPIJob(flow, inputs, out, BatchClient(base_url=server.base_url, api_key=None), settings=settings,
                       **kwargs)


def live(server: ChatServer, flow: Any, inputs: Path, out: Path) -> dict[str, dict[str, Any]]:
    with OpenAITransport(base_url=server.base_url) as transport:
        BatchRunner(Engine(transport), flow, inputs, out, concurrency=8).run()
    return results(out)


def same_as_live(batch: dict[str, dict[str, Any]], live_results: dict[str, dict[str, Any]]) -> None:
    assert batch.keys() == live_results.keys()
    for key, line in batch.items():
        expected = live_results[key]
        assert (line["status"], line["outputs"], line["usage"], line["error"]) == (
            expected["status"], expected["outputs"], expected["usage"], expected["error"]), key


def test_a_one_step_flow_over_1000_inputs_equals_live_in_waves_and_files_at_the_limits(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(1000)])
    # A window of 400 runs at once makes three waves; a 150-request file limit splits each.
    summary = job(server, flow, inputs, tmp_path / "out.jsonl", JobSettings(
        window=400, max_requests=150, poll_first=0.01, poll_max=0.05)).run_job()
    assert (summary.batch.progress.succeeded, summary.batch.progress.failed, summary.waves) == (1000, 0, 3)
    assert summary.batches == 3 + 3 + 2 == server.batch_stats.batches_created  # 400, 400, 200 in files of 150
    assert server.batch_stats.submitted_twice() == []
    assert set(server.batch_stats.custom_ids) == {f"{i}:1" for i in range(1000)}
    same_as_live(results(tmp_path / "out.jsonl"), live(server, flow, inputs, tmp_path / "live.jsonl"))
    # Done: every file it uploaded and every result file is deleted; the journal stays, for --status.
    stats = server.batch_stats
    assert stats.files_deleted == stats.files_uploaded + summary.batches  # one output file a batch
    assert read_journal(journal_path(tmp_path / "out.jsonl")).job == summary.job


def test_the_two_round_weather_flow_over_1000_inputs_equals_live(server: ChatServer, tmp_path: Path) -> None:
    flow = load_flow(FLOWS / "weather.yaml")
    inputs = weather_inputs(tmp_path, 1000)
    summary = job(server, flow, inputs, tmp_path / "out.jsonl", full_record=True).run_job()
    assert (summary.batch.progress.succeeded, summary.waves, summary.batches) == (1000, 2, 2)
    batch = results(tmp_path / "out.jsonl")
    same_as_live(batch, live(server, flow, inputs, tmp_path / "live.jsonl"))
    record = batch["q2"]["record"]  # the run record has the live shape: rounds, calls, usage
    assert [len(step["rounds"]) for step in record["steps"]] == [2]
    assert [c["arguments"] for c in record["steps"][0]["rounds"][0]["calls"]] == [
        {"location": "Tokyo"}, {"location": "Osaka"}]
    assert server.batch_stats.submitted_twice() == []
    assert set(server.batch_stats.custom_ids) == {f"q{i}:{n}" for i in range(1000) for n in (1, 2)}


def test_runs_through_the_batch_api_cost_half_of_what_the_same_runs_cost_live(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(6)])
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    batch = results(tmp_path / "out.jsonl")
    with OpenAITransport(base_url=server.base_url) as transport:
        live_summary = BatchRunner(Engine(transport), flow, inputs, tmp_path / "live.jsonl", concurrency=2).run()
    live_results = results(tmp_path / "live.jsonl")
    for key, line in batch.items():
        assert line["usage"] == live_results[key]["usage"]
        assert line["cost"] == pytest.approx(live_results[key]["cost"] / 2), key
    assert live_summary.cost is not None and live_summary.cost > 0
    assert summary.batch.cost == pytest.approx(live_summary.cost / 2)


def test_a_retryable_line_error_goes_in_the_next_wave_and_a_hopeless_one_fails_only_its_input(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(20)])
    # The queued replies answer the first lines the batch runs (its file is in custom_id order).
    server.enqueue(error_reply(500, "The server had an error"), error_reply(400, "Invalid 'messages'"))
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert (summary.batch.progress.succeeded, summary.batch.progress.failed, summary.waves) == (19, 1, 2)
    out = results(tmp_path / "out.jsonl")
    failed = [line for line in out.values() if line["status"] == "failed"]
    assert "HTTP 400" in failed[0]["error"]["message"] and "Invalid 'messages'" in failed[0]["error"]["message"]
    # The 500's request was retried as live: attempt 2, custom_id N:2, in wave 2.
    assert len([cid for cid in server.batch_stats.custom_ids if cid.endswith(":2")]) == 1
    assert server.batch_stats.submitted_twice() == []


@pytest.mark.parametrize("fate", ["expire_next", "cancel_next"])
def test_what_an_expired_or_cancelled_batch_did_not_run_is_sent_again(
        server: ChatServer, make_flow: Any, tmp_path: Path, fate: str) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(40)])
    getattr(server.batches, fate)(1)  # the first batch ends half-way
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert (summary.batch.progress.succeeded, summary.waves, summary.batches) == (40, 2, 2)
    twice = server.batch_stats.submitted_twice()
    assert len(twice) == 20  # exactly the half the first batch did not run
    same_as_live(results(tmp_path / "out.jsonl"), live(server, flow, inputs, tmp_path / "live.jsonl"))


def test_a_request_no_batch_runs_fails_its_input_after_the_resubmits(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": "x", "text": "hi"}])
    server.batches.expire_next(4)  # a one-line batch ending half-way runs nothing
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert (summary.batch.progress.failed, summary.batches) == (1, 4)
    error = results(tmp_path / "out.jsonl")["x"]["error"]
    assert error["type"] == "BatchJobError" and "did not run this request (expired batch" in error["message"]


def test_a_failed_batch_stops_the_job_without_failing_its_inputs_and_resume_finishes_it(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(10)])
    server.batches.fail_next(1)  # the enqueued-token limit
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert summary.batch.halted is not None and "token_limit_exceeded" in str(summary.batch.halted)
    assert not (tmp_path / "out.jsonl").read_text()  # not written down as failed: the account's failure
    summary = job(server, flow, inputs, tmp_path / "out.jsonl", resume=True).run_job()
    assert (summary.batch.progress.succeeded, summary.batch.halted) == (10, None)
    assert len(results(tmp_path / "out.jsonl")) == 10


def test_a_bad_key_stops_the_job_before_anything_is_sent(make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": 1, "text": "a"}])
    with ChatServer(api_key="right", batch=BatchSettings(speed=10_000)) as server:
        summary = BatchAPIJob(flow, inputs, tmp_path / "out.jsonl", BatchClient(base_url=server.base_url,
                              api_key="wrong"), settings=FAST).run_job()
        assert server.batch_stats.files_uploaded == 0
    assert summary.batch.halted is not None and "HTTP 401" in str(summary.batch.halted)
    assert "OPENAI_API_KEY" in str(summary.batch.halted)


def test_a_second_job_on_the_same_out_is_refused_unless_resumed(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": 1, "text": "a"}])
    job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    with pytest.raises(ConfigError, match="--resume"):
        job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    again: JobSummary = job(server, flow, inputs, tmp_path / "out.jsonl", resume=True).run_job()
    assert (again.batch.progress.skipped, again.batches) == (1, 0)


def test_resuming_answers_from_the_journal_and_polls_the_batch_in_flight(
        still: ChatServer, tmp_path: Path) -> None:
    """A job stopped while wave 2 is in flight: resuming replays wave 1 from the journal and waits for wave 2's
    batch, creating nothing."""
    flow = load_flow(FLOWS / "weather.yaml")
    inputs = weather_inputs(tmp_path, 30)
    first = job(still, flow, inputs, tmp_path / "out.jsonl")
    import threading

    done = threading.Event()
    thread = threading.Thread(target=lambda: (first.run_job(), done.set()), daemon=True)
    thread.start()
    waited = 0
    while still.batch_stats.batches_created < 1 and waited < 600:
        done.wait(0.05)
        waited += 1
    still.batches.complete_all()  # wave 1 ends; the runs call their functions and file wave 2
    while still.batch_stats.batches_created < 2 and waited < 1200:
        done.wait(0.05)
        waited += 1
    assert still.batch_stats.batches_created == 2
    first.stop()  # what Ctrl-C does (with the batches left running)
    thread.join(60)
    assert not (tmp_path / "out.jsonl").read_text()
    still.batches.complete_all()
    summary = job(still, flow, inputs, tmp_path / "out.jsonl", resume=True).run_job()
    assert (summary.batch.progress.succeeded, summary.batches, summary.answered_from_journal) == (30, 0, 30)
    assert still.batch_stats.batches_created == 2 and still.batch_stats.submitted_twice() == []
    assert len(results(tmp_path / "out.jsonl")) == 30


def test_a_job_recorded_on_a_cassette_replays_with_no_server(server: ChatServer, tmp_path: Path) -> None:
    from flowrunner._cassette import use_cassette

    flow = load_flow(FLOWS / "weather.yaml")
    inputs = weather_inputs(tmp_path, 12)
    cassette = tmp_path / "weather.batchapi.yaml"
    with use_cassette(cassette, "once"):  # recorded against the test server
        recorded = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert recorded.waves == 2 and "/v1/batches" in cassette.read_text()
    (tmp_path / "replayed").mkdir()
    with use_cassette(cassette, "none"):  # port 9 (discard): nothing answers there; slow polls are not waited
        replayed = BatchAPIJob(flow, inputs, tmp_path / "replayed" / "out.jsonl",
                               BatchClient(base_url="http://127.0.0.1:9/v1", api_key=None),
                               settings=JobSettings(poll_first=30, poll_max=60)).run_job()
    assert (replayed.batch.progress.succeeded, replayed.waves) == (12, 2)
    same_as_live(results(tmp_path / "replayed" / "out.jsonl"), results(tmp_path / "out.jsonl"))


def test_retry_failed_asks_the_server_again_for_the_failed_inputs_only(
        server: ChatServer, make_flow: Any, tmp_path: Path) -> None:
    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(5)])
    server.enqueue(error_reply(400, "Invalid 'messages'"))
    first = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert first.batch.progress.failed == 1
    again = job(server, flow, inputs, tmp_path / "out.jsonl", retry_failed=True).run_job()
    assert (again.batch.progress.succeeded, again.batch.progress.skipped, again.batches) == (1, 4, 1)
    latest = {line["key"]: line["status"] for line in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert latest == {str(i): "succeeded" for i in range(5)}  # the latest line per key wins


def test_hostile_answers_fail_no_run_and_raise_no_traceback(server: ChatServer, make_flow: Any,
                                                            tmp_path: Path) -> None:
    """Result lines that are not JSON or name no request are not answers: those requests go in the next wave.
    A poll answered with something that is not a batch stops the job, resumably."""
    from flowrunner.testing import Reply

    flow = make_flow(ONE_STEP)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"id": i, "text": f"line {i}"} for i in range(3)])
    server.batches.enqueue("content", Reply(body=b'not json\n{"custom_id": 5}\n[]\n' + b"{" * 100_000 + b"\n",
                                            content_type="application/octet-stream"))
    summary = job(server, flow, inputs, tmp_path / "out.jsonl").run_job()
    assert (summary.batch.progress.succeeded, summary.waves) == (3, 2)
    server.batches.enqueue("retrieve", Reply(body={"id": 5, "status": ["?"]}))
    summary = job(server, flow, inputs, tmp_path / "other.jsonl").run_job()
    assert summary.batch.halted is not None and "is not a batch" in str(summary.batch.halted)
    assert not (tmp_path / "other.jsonl").read_text()
