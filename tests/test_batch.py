"""Batch runs: results per input, resume, retries, bad lines, concurrency, cassettes, kill -9 and Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from flowrunner import ConfigError, Engine, FunctionTransport, OpenAITransport, use_cassette
from flowrunner._batch import BatchRunner
from flowrunner._pricing import Price
from flowrunner.testing import ChatServer, Reply

from conftest import FLOWS, ROOT, clean_env

FLOW = """\
name: echo
model: m
inputs:
  question: {type: string}
steps:
  - id: reply
    messages:
      - {role: user, content: "{{ inputs.question }}"}
"""


def echo(request):
    """A model that echoes the question, and fails (HTTP-style) on questions containing 'fail'."""
    text = request["messages"][-1]["content"]
    if "fail" in text:
        return {"error": {"message": f"refused {text}", "type": "server_error"}}
    return {"id": "r", "model": "m", "choices": [{"message": {"role": "assistant", "content": f"echo {text}"},
                                                  "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def inputs_file(path, questions):
    path.write_text("".join(json.dumps({"id": q, "question": q}) + "\n" for q in questions))
    return path


def results(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_batch(flow, inputs, out, transport=None, **options):
    transport = transport or FunctionTransport(echo)
    summary = BatchRunner(Engine(transport), flow, inputs, out, **options).run()
    return summary, transport


def test_one_result_line_per_input_with_outputs_usage_and_errors(make_flow, tmp_path):
    flow = make_flow(FLOW)
    inputs = inputs_file(tmp_path / "in.jsonl", ["a", "b", "fail c", "d"])
    out = tmp_path / "out.jsonl"
    summary, transport = run_batch(flow, inputs, out, concurrency=3)
    by_key = {r["key"]: r for r in results(out)}
    assert set(by_key) == {"a", "b", "fail c", "d"} and len(results(out)) == 4
    assert by_key["a"] == {"key": "a", "line": 1, "input": {"id": "a", "question": "a"}, "status": "succeeded",
                           "outputs": {"reply": "echo a"},
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                           "cost": None, "error": None}  # model m has no price
    failed = by_key["fail c"]
    assert failed["status"] == "failed" and failed["outputs"] is None
    assert failed["error"]["type"] == "APIError" and "refused fail c" in failed["error"]["message"]
    assert failed["error"]["step"] == "reply"
    p = summary.progress
    assert (p.total, p.succeeded, p.failed, p.skipped, p.requests, p.tokens) == (4, 3, 1, 0, 4, 15)
    assert summary.usage == {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    assert not summary.interrupted
    # The id field is the key, not an input of this flow (which has none called id).
    assert all(set(r["messages"][0]) == {"role", "content"} for r in transport.requests)


def test_the_batch_costs_its_runs_together_or_says_once_why_not(make_flow, tmp_path):
    flow = make_flow(FLOW)
    inputs = inputs_file(tmp_path / "in.jsonl", ["a", "b", "fail c", "d"])
    unpriced, _ = run_batch(flow, inputs, tmp_path / "unpriced.jsonl")
    assert unpriced.cost is None and unpriced.cost_problems == ("no price for model 'm'",)

    transport = FunctionTransport(echo)
    priced = BatchRunner(Engine(transport, prices={"m": Price(input=1.0, output=2.0)}), flow, inputs,
                         tmp_path / "priced.jsonl").run()
    by_key = {r["key"]: r for r in results(tmp_path / "priced.jsonl")}
    assert by_key["a"]["cost"] == 3 * 1e-6 + 2 * 2e-6  # $1 and $2 per million prompt and completion tokens
    assert by_key["fail c"]["cost"] == 0  # an error answered: nothing billed
    assert priced.cost == 3 * 7e-6 and priced.cost_problems == ()


def test_full_record_adds_every_round(make_flow, tmp_path):
    inputs = inputs_file(tmp_path / "in.jsonl", ["a"])
    run_batch(make_flow(FLOW), inputs, tmp_path / "out.jsonl", full_record=True)
    (line,) = results(tmp_path / "out.jsonl")
    assert line["record"]["steps"][0]["rounds"][0]["content"] == "echo a"


def test_resume_skips_done_keys_and_retry_failed_reruns_only_failures(make_flow, tmp_path):
    flow = make_flow(FLOW)
    inputs = inputs_file(tmp_path / "in.jsonl", ["a", "fail b", "c"])
    out = tmp_path / "out.jsonl"
    run_batch(flow, inputs, out)
    with pytest.raises(ConfigError, match="already holds 3 results"):
        run_batch(flow, inputs, out)  # not without --resume: that would duplicate every line
    summary, transport = run_batch(flow, inputs, out, resume=True)
    assert transport.requests == [] and summary.progress.skipped == 3
    # The failure is fixed on the server's side; --retry-failed reruns it alone.
    summary, transport = run_batch(flow, inputs, out, retry_failed=True,
                                   transport=FunctionTransport(lambda r: echo({"messages": [{"content": "ok"}]})))
    assert len(transport.requests) == 1 and transport.requests[0]["messages"][0]["content"] == "fail b"
    lines = results(out)
    assert len(lines) == 4 and [r["status"] for r in lines if r["key"] == "fail b"] == ["failed", "succeeded"]
    assert summary.progress.skipped == 2


def test_a_torn_last_line_is_rewritten_not_kept(make_flow, tmp_path):
    flow = make_flow(FLOW)
    inputs = inputs_file(tmp_path / "in.jsonl", ["a", "b"])
    out = tmp_path / "out.jsonl"
    run_batch(flow, inputs_file(tmp_path / "first.jsonl", ["a"]), out)
    with out.open("a") as handle:
        handle.write('{"key": "b", "line": 2, "input": {"id": "b", "qu')  # what a kill mid-write leaves
    summary, transport = run_batch(flow, inputs, out, resume=True)
    assert summary.cut_torn_line and len(transport.requests) == 1
    assert [(r["key"], r["status"]) for r in results(out)] == [("a", "succeeded"), ("b", "succeeded")]


def test_bad_input_lines_are_failed_results_not_a_crash(make_flow, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"question": "ok"}\nnot json\n{"question": 3}\n{"colour": "red"}\n[]\n')
    summary, transport = run_batch(make_flow(FLOW), inputs, tmp_path / "out.jsonl")
    errors = {r["line"]: r["error"]["message"] for r in results(tmp_path / "out.jsonl") if r["error"]}
    assert errors[2].startswith("line 2 is not JSON")
    assert errors[3] == "line 3: input 'question': 3 is not of type 'string'"
    assert errors[4].startswith("line 4: flow 'echo' has no input 'colour'")
    assert errors[5] == "line 5 is a JSON list, not an object of input values"
    assert len(transport.requests) == 1 and summary.progress.failed == 4


def test_a_flow_that_cannot_run_at_all_stops_the_batch(make_flow, tmp_path):
    flow = make_flow(FLOW.replace("model: m\n", ""))
    with pytest.raises(ConfigError, match="has no model"):
        run_batch(flow, inputs_file(tmp_path / "in.jsonl", ["a", "b", "c"]), tmp_path / "out.jsonl")


def test_stop_takes_no_new_inputs_and_finishes_the_runs_in_flight(make_flow, tmp_path):
    flow = make_flow(FLOW)
    gate = threading.Event()

    def slow(request):
        gate.wait(5)
        return echo(request)

    inputs = inputs_file(tmp_path / "in.jsonl", [f"q{n}" for n in range(50)])
    runner = BatchRunner(Engine(FunctionTransport(slow)), flow, inputs, tmp_path / "out.jsonl", concurrency=2,
                         tick=0.01)

    def stop_when_busy(progress):
        if progress.in_flight == 2 and not progress.stopping:
            runner.stop()
            gate.set()

    runner.on_progress = stop_when_busy
    summary = runner.run()
    assert summary.interrupted and summary.progress.succeeded == 2 == len(results(tmp_path / "out.jsonl"))


class SlowServer(ChatServer):
    """The test server with latency, counting how many requests it serves at once."""

    def __init__(self, latency: float, **kwargs):
        super().__init__(**kwargs)
        self.latency = latency
        self.busy = self.most_busy = 0
        self._count_lock = threading.Lock()

    def answer(self, request):
        with self._count_lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        try:
            time.sleep(self.latency)
            return super().answer(request)
        finally:
            with self._count_lock:
                self.busy -= 1


QUESTIONS = [f"What's the weather in {city}?" for city in
             ("Boston", "Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome", "Seoul", "Accra", "Perth")]


@pytest.mark.server
def test_concurrent_runs_share_one_engine_against_the_test_server(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    from flowrunner import load_flow

    with SlowServer(0.05) as server:
        summary, _ = run_batch(load_flow(FLOWS / "weather.yaml"), inputs, tmp_path / "out.jsonl",
                               transport=OpenAITransport(base_url=server.base_url), concurrency=4)
        assert 2 <= server.most_busy <= 4
    assert summary.progress.succeeded == 12 and summary.progress.requests == 24  # a call round and an answer
    for line in results(tmp_path / "out.jsonl"):
        city = line["input"]["question"].split(" in ")[1].rstrip("?")
        assert f"location {city}, temperature 72" in line["outputs"]["answer"]


@pytest.mark.server
def test_a_batch_recorded_concurrently_replays_in_any_order(chat_server, tmp_path):
    from flowrunner import load_flow

    flow = load_flow(FLOWS / "weather.yaml")
    lines = [json.dumps({"question": q}) + "\n" for q in QUESTIONS]
    (tmp_path / "in.jsonl").write_text("".join(lines))
    cassette = tmp_path / "batch.yaml"
    with use_cassette(cassette, "all"):
        run_batch(flow, tmp_path / "in.jsonl", tmp_path / "live.jsonl",
                  transport=OpenAITransport(base_url=chat_server.base_url), concurrency=4)
    sent = len(chat_server.requests)
    random.Random(7).shuffle(lines)
    (tmp_path / "shuffled.jsonl").write_text("".join(lines))
    with use_cassette(cassette, "none"):  # no base URL: only the cassette can answer
        summary, _ = run_batch(flow, tmp_path / "shuffled.jsonl", tmp_path / "replayed.jsonl",
                               transport=OpenAITransport(), concurrency=4)
    assert summary.progress.succeeded == 12 and len(chat_server.requests) == sent

    def outcome(path):
        return {r["key"]: (r["input"], r["outputs"], r["usage"]) for r in results(path)}

    assert outcome(tmp_path / "replayed.jsonl") == outcome(tmp_path / "live.jsonl")


# --- the command, as a user runs it -------------------------------------------------------------

def flowrun(*args):
    env = clean_env()
    return subprocess.Popen([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_lines(path, count, process, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines")


def many_inputs(tmp_path, n):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"question": f"What's the weather in city{i}?"}) + "\n" for i in range(n)))
    return path


@pytest.mark.server
def test_kill_9_mid_batch_then_resume_gives_every_result_once(tmp_path):
    inputs, out = many_inputs(tmp_path, 60), tmp_path / "out.jsonl"
    with SlowServer(0.03) as server:
        args = ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                "--base-url", server.base_url, "--concurrency", "4"]
        process = flowrun(*args)
        wait_for_lines(out, 10, process)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        text = out.read_text()
        assert text.endswith("\n")  # whole lines only: each is one write
        killed = [json.loads(line) for line in text.splitlines()]
        assert 10 <= len(killed) < 60
        process = flowrun(*args, "--resume")
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"{len(killed)} skipped" in stdout
    final = results(out)
    keys = [r["key"] for r in final]
    assert len(keys) == 60 == len(set(keys))  # complete and duplicate-free
    assert final[: len(killed)] == killed and all(r["status"] == "succeeded" for r in final)
    assert sorted(r["line"] for r in final) == list(range(1, 61))


@pytest.mark.server
def test_ctrl_c_stops_cleanly_and_prints_the_command_that_resumes(tmp_path):
    inputs, out = many_inputs(tmp_path, 40), tmp_path / "out.jsonl"
    with SlowServer(0.05) as server:
        process = flowrun("batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                          "--base-url", server.base_url, "--concurrency", "2", "--progress-interval", "0.1")
        wait_for_lines(out, 4, process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "batch interrupted" in stdout
        # Not a terminal: plain progress lines on stderr, with counts, rate, ETA and tokens.
        progress = [line for line in stderr.splitlines() if line.startswith("batch: ")]
        running = [line for line in progress if "stopping" not in line]
        assert running and all("/40 done (0 failed)" in line and "ETA" in line and "tokens" in line
                               for line in running)
        # Stopping: no ETA (the inputs not started will not run).
        assert all("ETA" not in line for line in progress if "stopping: " in line)
        assert re.search(r"stopping: \d still running \(Ctrl-C again to abandon them\); \d+/40 done", stderr)
        command = stderr.split("finish the batch with:\n", 1)[1].strip()
        assert command.startswith("flowrun batch flows/weather.yaml") and "--resume" in command
        done = results(out)  # whole lines only
        assert 4 <= len(done) < 40
        resumed = subprocess.run([sys.executable, "-m", "flowrunner._cli", *shlex.split(command)[1:]], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    keys = [r["key"] for r in results(out)]
    assert len(keys) == 40 == len(set(keys))


@pytest.mark.server
def test_a_second_ctrl_c_abandons_the_runs_in_flight_and_resume_redoes_them(tmp_path):
    inputs, out = many_inputs(tmp_path, 12), tmp_path / "out.jsonl"
    with SlowServer(0.4) as server:  # a run is two requests: 0.8 s
        args = ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                "--base-url", server.base_url, "--concurrency", "3"]
        process = flowrun(*args)
        wait_for_lines(out, 3, process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)  # the runs in flight need up to 0.8 s more
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        abandoned = re.search(r"interrupted; (\d+) runs? in flight abandoned; finish the batch with:", stderr)
        assert abandoned and 1 <= int(abandoned.group(1)) <= 3, stderr
        assert "Traceback" not in stderr
        done = results(out)  # whole lines only: the abandoned runs wrote nothing, not half a line
        assert 3 <= len(done) < 12
        server.latency = 0.0
        process = flowrun(*args, "--resume")
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"{len(done)} skipped" in stdout
    keys = [r["key"] for r in results(out)]
    assert len(keys) == 12 == len(set(keys))


def test_batch_usage_errors_exit_2(tmp_path):
    inputs = many_inputs(tmp_path, 1)
    process = flowrun("batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(tmp_path / "o.jsonl"),
                      "-i", "question=hi")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "takes its inputs from --inputs" in stderr
    process = flowrun("batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(tmp_path / "o.jsonl"),
                      "--concurrency", "0")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "expected a whole number of at least 1" in stderr


def test_the_shipped_batch_example_replays_its_cassette_with_no_key(tmp_path):
    out = tmp_path / "results.jsonl"
    process = flowrun("batch", "flows/weather.yaml", "--inputs", "flows/data/weather.jsonl", "--out", str(out),
                      "--cassette", "flows/cassettes/weather.batch.yaml", "--concurrency", "4")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.startswith("batch finished: 8 succeeded, 0 failed")
    answers = {r["key"]: r["outputs"]["answer"] for r in results(out)}
    assert "location Paris, temperature 72, unit celsius" in answers["paris"]
    assert "Osaka" in answers["tokyo-osaka"] and answers["hello"].startswith("Hello")


def test_a_terminal_gets_one_redrawn_line(monkeypatch):
    import io

    from flowrunner._batch import BatchProgress
    from flowrunner._cli.batch import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "200")
    screen = Terminal()
    display = Progress(screen, None)
    display.update(BatchProgress(total=100, skipped=20, succeeded=30, failed=10, in_flight=4, requests=45,
                                 tokens=12345, elapsed=8.0))
    display.update(BatchProgress(100, 20, 31, 10, 4, 46, 12400, 8.1))  # within 0.2 s: not redrawn yet
    display.update(BatchProgress(100, 20, 32, 10, 4, 47, 12500, 8.2))
    assert screen.getvalue() == ("\r[############............] 40/80 done (10 failed), 20 skipped, 4 running, "
                                 "5.0/s, ETA 8s, 12,345 tokens\x1b[K")
    display.finish()  # the line ends at the latest progress, not at the last one drawn
    assert screen.getvalue().endswith("\r[############............] 42/80 done (10 failed), 20 skipped, 4 running, "
                                      "5.1/s, ETA 7s, 12,500 tokens\x1b[K\n")


@pytest.mark.parametrize("columns", [80, 40])
def test_the_progress_line_fits_the_terminal_and_stopping_has_no_eta(monkeypatch, columns):
    import io

    from flowrunner._batch import BatchProgress
    from flowrunner._cli.batch import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", str(columns))
    screen = Terminal()
    display = Progress(screen, None)
    display.update(BatchProgress(total=22000, skipped=1000, succeeded=12345, failed=678, in_flight=16,
                                 requests=45678, tokens=98765432, elapsed=60.0))
    display.update(BatchProgress(22000, 1000, 20000, 999, 1, 50000, 99999999, 100.0, stopping=True))
    display.update(BatchProgress(22000, 1000, 20000, 999, 1, 50000, 99999999, 101.0, stopping=True))
    display.finish()
    lines = [part.removesuffix("\x1b[K") for part in screen.getvalue().strip("\n").split("\r") if part]
    assert len(lines) == 3 and all(len(line) < columns for line in lines), lines
    assert lines[1] == lines[2] and "ETA" not in lines[2]
    if columns == 80:  # the bar gives way to the numbers, and the ETA is still on screen
        assert lines[0].startswith("13023/21000 done (678 failed), 1000 skipped, 16 running, 217.1/s, ETA 37s")
        assert lines[2] == ("stopping: 1 still running (Ctrl-C again to abandon them); 20999/21000 done "
                            "(999 failed), 1000 skipped")[:76] + "..."


def test_a_batch_at_the_servers_rpm_gets_no_429(make_flow, tmp_path):
    from flowrunner._ratelimit import RateLimit, RateLimiter
    from flowrunner.testing import Limits

    # Retries off, yet a 429 here would not fail a run: pacing at a declared limit, the engine sends a
    # refused request once more (the pacing's slip); `rejected` is what says whether the pacing held.
    flow = make_flow(FLOW.replace("model: m\n", "model: m\nretry: {max_attempts: 1}\n"))
    inputs = inputs_file(tmp_path / "in.jsonl", [f"question {i}" for i in range(24)])
    # 600 RPM enforced as 10 requests in any 1-second window; the server is slow, so runs overlap.
    with ChatServer(limits=Limits(rpm=600, window=1.0), latency=0.05) as server, \
            OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter(), rate_limit=RateLimit(rpm=600))  # as --rate-limit rpm=600
        summary = BatchRunner(engine, flow, inputs, tmp_path / "out.jsonl", concurrency=6).run()
        stats = server.stats
    assert (summary.progress.succeeded, summary.progress.failed) == (24, 0)
    assert stats.rejected == 0 and stats.most_in(1.0) <= 10


def test_a_batch_with_no_declared_limit_adapts_to_the_servers_headers_and_429s(make_flow, tmp_path):
    from flowrunner._ratelimit import RateLimiter
    from flowrunner.testing import Limits

    flow = make_flow(FLOW)  # no rate_limit: the engine has only the server's headers and 429s to go by
    inputs = inputs_file(tmp_path / "in.jsonl", [f"question {i}" for i in range(30)])
    with ChatServer(limits=Limits(rpm=600, window=1.0), latency=0.02) as server, \
            OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter())
        summary = BatchRunner(engine, flow, inputs, tmp_path / "out.jsonl", concurrency=8).run()
        stats = server.stats
    assert (summary.progress.succeeded, summary.progress.failed) == (30, 0)
    assert stats.accepted == 30
    # It follows the server: a spent budget (remaining 0) or a 429 pauses every worker until the reset,
    # rather than each worker retrying on its own and most of the 30 requests being refused.
    assert stats.rejected < 8, stats


def test_a_used_up_daily_limit_stops_the_batch_and_resume_finishes_it(make_flow, tmp_path):
    from flowrunner._exceptions import RateLimitError
    from flowrunner._ratelimit import RateLimiter

    flow = make_flow(FLOW.replace("model: m\n", "model: m\nrate_limit: {rpd: 3}\n"))
    inputs, out = inputs_file(tmp_path / "in.jsonl", [f"q{i}" for i in range(7)]), tmp_path / "out.jsonl"
    summary = BatchRunner(Engine(FunctionTransport(echo), limiter=RateLimiter()), flow, inputs, out,
                          concurrency=1).run()
    assert isinstance(summary.halted, RateLimitError) and "daily request limit (rpd=3)" in str(summary.halted)
    assert not summary.interrupted
    # The input that met the limit is not written down as failed, nor are the ones after it.
    assert [r["key"] for r in results(out)] == ["q0", "q1", "q2"]
    # A new day (here: a new limiter): --resume goes on where the batch stopped.
    summary = BatchRunner(Engine(FunctionTransport(echo), limiter=RateLimiter()), flow, inputs, out,
                          concurrency=1, resume=True).run()
    assert summary.halted is not None and summary.progress.skipped == 3
    summary = BatchRunner(Engine(FunctionTransport(echo), limiter=RateLimiter()), flow, inputs, out,
                          concurrency=1, resume=True).run()
    assert summary.halted is None and summary.progress.succeeded == 1
    assert sorted(r["key"] for r in results(out)) == [f"q{i}" for i in range(7)]
    assert all(r["status"] == "succeeded" for r in results(out))


@pytest.mark.server
def test_a_bad_key_stops_the_batch_with_nothing_written_and_says_how_to_finish(tmp_path):
    inputs, out = many_inputs(tmp_path, 20), tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    with ChatServer(api_key="sk-the-right-key") as server:
        args = ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                "--base-url", server.base_url, "--concurrency", "2", "--rate-limit", "rpm=600"]
        process = subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, env={**env, "OPENAI_API_KEY": "sk-a-wrong-key-0000"})
        asked = len(server.requests)
    assert process.returncode == 1, process.stderr
    assert process.stdout.startswith("batch stopped: 0 succeeded, 0 failed")
    assert "HTTP 401" in process.stderr and "OPENAI_API_KEY" in process.stderr and "Traceback" not in process.stderr
    assert "sk-a-wrong-key-0000" not in process.stderr + process.stdout
    command = process.stderr.split("finish it with:\n", 1)[1].strip()
    assert "--resume" in command and "--rate-limit rpm=600" in command
    assert out.read_text() == "" and asked <= 2  # the runs in flight at most, not one request per input


def test_a_secret_in_an_inputs_error_stays_out_of_the_results(make_flow, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET_TOKEN", "tok-very-secret-99")
    flow = make_flow(FLOW.replace("  question: {type: string}\n",
                                  "  question: {type: string}\n  token: {type: integer, env: MY_SECRET_TOKEN}\n"))
    inputs, out = inputs_file(tmp_path / "in.jsonl", ["q"]), tmp_path / "out.jsonl"
    run_batch(flow, inputs, out)
    text = out.read_text()
    assert "tok-very-secret-99" not in text and "[redacted:MY_SECRET_TOKEN]" in text


def test_a_batch_with_no_declared_limit_keeps_to_a_server_allowing_one_request_at_a_time(make_flow, tmp_path):
    # The hard case: one request per 0.2 s window (300 RPM enforced in the shortest way), eight workers.
    # Released all at once at each reset, seven of eight would be refused every time and give up.
    from flowrunner._ratelimit import RateLimiter
    from flowrunner.testing import Limits

    inputs = inputs_file(tmp_path / "in.jsonl", [f"question {i}" for i in range(12)])
    with ChatServer(limits=Limits(rpm=300, window=0.2), latency=0.02) as server, \
            OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter())
        summary = BatchRunner(engine, make_flow(FLOW), inputs, tmp_path / "out.jsonl", concurrency=8).run()
        stats = server.stats
    assert (summary.progress.succeeded, summary.progress.failed) == (12, 0)
    assert stats.rejected < 8, stats.rejected_429


@pytest.mark.server
def test_resuming_a_batch_recorded_to_a_cassette_adds_to_the_cassette(tmp_path):
    inputs, out, cassette = many_inputs(tmp_path, 3), tmp_path / "out.jsonl", tmp_path / "batch.yaml"
    with ChatServer() as server:
        args = ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                "--base-url", server.base_url, "--cassette", str(cassette)]
        first = flowrun(*args)
        first.communicate(timeout=60)
        assert first.returncode == 0
        with inputs.open("a") as handle:  # as if the first batch had been stopped before these two
            handle.write('{"question": "What\'s the weather in Lima?"}\n{"question": "What\'s the weather in Oslo?"}\n')
        resumed = flowrun(*args, "--resume")
        stdout, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr  # not 2 cassette misses, as `once` on an existing cassette gave
    assert stdout.startswith("batch finished: 2 succeeded, 0 failed, 3 skipped")
    assert len(results(out)) == 5


def test_a_lone_torn_line_is_not_appended_to_without_resume(make_flow, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"key": "boston", "sta')
    with pytest.raises(ConfigError, match="already holds a partial result line"):
        run_batch(make_flow(FLOW), inputs_file(tmp_path / "in.jsonl", ["q"]), out)
    assert out.read_text() == '{"key": "boston", "sta'


def test_inputs_that_are_not_a_regular_file_are_refused_before_anything_runs(make_flow, tmp_path):
    fifo = tmp_path / "inputs.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="(?s)are not a regular file.*save it to a file first"):
        run_batch(make_flow(FLOW), fifo, tmp_path / "out.jsonl")


def test_a_flow_with_no_model_stops_the_batch_before_any_worker_starts(make_flow, tmp_path):
    flow, seen = make_flow(FLOW.replace("model: m\n", "")), []
    with pytest.raises(ConfigError, match="has no model"):
        BatchRunner(Engine(FunctionTransport(echo)), flow, inputs_file(tmp_path / "in.jsonl", ["q1", "q2"]),
                    tmp_path / "out.jsonl", on_progress=seen.append).run()
    assert seen == []  # no progress, no "stopping: waiting for the runs in flight" before the real error


def test_resumed_progress_counts_the_inputs_already_done_from_the_start(make_flow, tmp_path):
    flow, out = make_flow(FLOW), tmp_path / "out.jsonl"
    inputs = inputs_file(tmp_path / "in.jsonl", [f"q{i}" for i in range(2000)])
    # The 10 to do come first, so the feeder waits on the workers before it reaches the done ones.
    out.write_text("".join(json.dumps({"key": f"q{i}", "status": "succeeded"}) + "\n" for i in range(10, 2000)))
    seen: list[Any] = []

    def slow_echo(request):
        time.sleep(0.01)
        return echo(request)

    BatchRunner(Engine(FunctionTransport(slow_echo)), flow, inputs, out, resume=True, concurrency=1,
                on_progress=seen.append, tick=0.005).run()
    # From the first report the ETA counts the 10 left to do, not the 2,000 still being read.
    assert seen and seen[0].skipped == 1990 and seen[0].total - seen[0].skipped == 10
    assert seen[-1].skipped == 1990 and seen[-1].done == 10


@pytest.mark.server
def test_refused_filtered_or_empty_answers_are_failed_lines_and_a_cut_one_carries_its_warning(make_flow, tmp_path):
    from flowrunner.testing import Reply

    from test_answers import FILTERED

    real = ROOT / "tests" / "data" / "real-responses"
    inputs = inputs_file(tmp_path / "in.jsonl", ["refused", "cut", "empty", "filtered"])
    flow = make_flow(FLOW.replace("  - id: reply\n", "  - id: reply\n    max_tokens: 50\n"))
    with ChatServer() as server:  # one worker: the queued answers go to the inputs in order
        server.enqueue(*(Reply.from_recorded(real / name) for name in
                         ("09-refusal.json", "11-length-cut.json", "13-reasoning-empty.json")), Reply(body=FILTERED))
        summary, _ = run_batch(flow, inputs, tmp_path / "out.jsonl",
                               transport=OpenAITransport(base_url=server.base_url), concurrency=1)
    by_key = {r["key"]: r for r in results(tmp_path / "out.jsonl")}
    assert {key: (r["status"], (r["error"] or {}).get("type")) for key, r in by_key.items()} == {
        "refused": ("failed", "RefusalError"), "cut": ("succeeded", None), "empty": ("failed", "EmptyAnswerError"),
        "filtered": ("failed", "ContentFilterError")}
    assert all(r["outputs"] is None for key, r in by_key.items() if key != "cut")
    assert by_key["cut"]["outputs"]["reply"].endswith("9. Florida")
    (warning,) = by_key["cut"]["warnings"]
    assert warning["step"] == "reply"
    assert "cut at the token limit (finish_reason: length, max_tokens: 50)" in warning["message"]
    assert all("warnings" not in r for key, r in by_key.items() if key != "cut")
    assert (summary.progress.succeeded, summary.progress.failed) == (1, 3)


@pytest.mark.parametrize("from_env", [False, True], ids=["--base-url", "OPENAI_BASE_URL"])
def test_the_command_to_finish_a_batch_never_shows_the_base_urls_credentials(tmp_path, capsys, monkeypatch, from_env):
    from flowrunner._cli import main

    inputs, out = many_inputs(tmp_path, 3), tmp_path / "out.jsonl"
    password = "pw-s3cr3t-0042"
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with ChatServer(api_key="sk-the-right-key") as server:  # the URL's user:password is sent instead: a 401
        base_url = server.base_url.replace("http://", f"http://alice:{password}@")
        where = ["--base-url", base_url]
        if from_env:
            monkeypatch.setenv("OPENAI_BASE_URL", base_url)
            where = []
        code = main(["batch", str(FLOWS / "weather.yaml"), "--inputs", str(inputs), "--out", str(out),
                     "--concurrency", "1", *where])
        assert server.requests  # the batch really reached the server, credentials and all
    captured = capsys.readouterr()
    assert code == 1 and "HTTP 401" in captured.err
    command = captured.err.split("finish it with:\n", 1)[1].strip()
    assert password not in captured.out + captured.err
    if from_env:  # the environment gives it again
        assert "--base-url" not in command
    else:  # to be put back by whoever runs it
        assert f"--base-url 'http://****@127.0.0.1:{server.port}/v1'" in command


def test_a_second_batch_on_the_same_out_is_refused_while_the_first_runs_and_kill_9_frees_it(tmp_path):
    inputs, out = many_inputs(tmp_path, 40), tmp_path / "out.jsonl"
    with SlowServer(0.1) as server:
        args = ["batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(out),
                "--base-url", server.base_url, "--concurrency", "2"]
        first = flowrun(*args)
        try:
            wait_for_lines(out, 2, first)
            for extra in (["--resume"], []):  # a resume would run every remaining input twice; a fresh batch too
                second = flowrun(*args, *extra)
                stdout, stderr = second.communicate(timeout=60)
                assert second.returncode == 2, stderr
                assert f"{out} is in use by another batch (pid {first.pid}: python -m flowrunner._cli batch flows" in stderr, stderr
                assert "Traceback" not in stderr and stdout == ""
                assert first.poll() is None  # refused at once, long before the first could end
        finally:
            os.kill(first.pid, signal.SIGKILL)  # the kernel drops the lock with the process
            first.communicate()
        done = results(out)
        third = flowrun(*args, "--resume")
        stdout, stderr = third.communicate(timeout=60)
    assert third.returncode == 0, stderr
    assert f"{len(done)} skipped" in stdout
    keys = [r["key"] for r in results(out)]
    assert len(keys) == 40 == len(set(keys))


# --- hostile answers fail their own input; every other input still gets its line ------------------

def run_hostile_batch(tmp_path, flow_text, hostile, *extra):
    """A batch of five inputs through the CLI in which one answer (the first request's) is `hostile`;
    the results by status, and the finished process."""
    import textwrap

    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(flow_text))
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"q{n}", "question": f"Say {n}"}) + "\n" for n in range(5)))
    with ChatServer() as server:
        server.enqueue(hostile)
        done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "batch", str(flow), "--inputs", str(inputs),
                               "--out", str(out), "--base-url", server.base_url, "--concurrency", "2", *extra],
                              cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    lines = results(out) if out.exists() else []
    by_status: dict[str, list[dict[str, Any]]] = {"succeeded": [], "failed": []}
    for line in lines:
        by_status[line["status"]].append(line)
    return by_status, done


@pytest.mark.server
def test_a_stream_chunk_of_the_wrong_shape_fails_only_its_input(tmp_path):
    from test_stream import STREAMED_PLAIN, sse

    by_status, done = run_hostile_batch(tmp_path, STREAMED_PLAIN, sse('{"choices": 5}'))
    assert len(by_status["succeeded"]) == 4, done.stderr
    (failed,) = by_status["failed"]
    assert failed["error"]["type"] == "ResponseError"
    assert "not shaped like a chat.completion.chunk" in failed["error"]["message"]
    assert done.returncode == 1 and "Traceback" not in done.stderr


@pytest.mark.server
def test_an_answer_nested_100000_deep_fails_only_its_input(tmp_path):
    from test_json import DEEP
    from test_stream import STREAMED_PLAIN

    flow = STREAMED_PLAIN.replace("stream: true", "stream: false")
    hostile = Reply(body='{"choices": ' + DEEP + "}", content_type="application/json")
    by_status, done = run_hostile_batch(tmp_path, flow, hostile)
    assert len(by_status["succeeded"]) == 4, done.stderr
    (failed,) = by_status["failed"]
    assert failed["error"]["type"] == "ResponseError" and "nested deeper than 100 levels" in failed["error"]["message"]
    assert done.returncode == 1 and "Traceback" not in done.stderr


LOOKUP = """
    model: m
    inputs:
      question: {type: string}
    functions:
      lookup:
        entry: tools:lookup
        description: Look a word up
        parameters: {type: object, properties: {x: {}}}
    steps:
      - id: answer
        functions: [lookup]
        messages: [{role: user, content: "{{ inputs.question }}"}]
"""


@pytest.mark.server
def test_arguments_nested_940_deep_leave_every_full_record_line_whole(tmp_path):
    from test_json import nested, tool_call

    (tmp_path / "tools.py").write_text("def lookup(x=None):\n    return 'found'\n")
    arguments = '{"x": ' + nested(940) + "}"  # Python reads it, but writing it inside a record recursed too deep
    by_status, done = run_hostile_batch(tmp_path, LOOKUP, tool_call(arguments), "--full-record")
    assert len(by_status["succeeded"]) == 5, done.stderr
    assert done.returncode == 0
    (called,) = [line["record"]["steps"][0]["rounds"][0]["calls"] for line in by_status["succeeded"]
                 if line["record"]["steps"][0]["rounds"][0]["calls"]]
    assert called[0]["raw_arguments"] == arguments and "nested deeper than 100 levels" in called[0]["error"]


@pytest.mark.server
def test_an_answer_with_a_lone_surrogate_is_written_losslessly_and_resume_skips_it(tmp_path):
    from test_json import SURROGATE, raw_answer
    from test_stream import STREAMED_PLAIN

    flow = STREAMED_PLAIN.replace("stream: true", "stream: false")
    by_status, done = run_hostile_batch(tmp_path, flow, raw_answer(f'"{SURROGATE}"'))
    assert len(by_status["succeeded"]) == 5 and not by_status["failed"], done.stderr
    assert done.returncode == 0
    out = tmp_path / "out.jsonl"
    out.read_bytes().decode("utf-8")  # valid UTF-8
    assert sum(line["outputs"] == {"answer": "hel\ud800lo"} for line in by_status["succeeded"]) == 1
    resumed = subprocess.run([sys.executable, "-m", "flowrunner._cli", "batch", str(tmp_path / "flow.yaml"),
                              "--inputs", str(tmp_path / "in.jsonl"), "--out", str(out), "--resume",
                              "--base-url", "http://127.0.0.1:9/v1"],
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert "0 succeeded, 0 failed, 5 skipped" in resumed.stdout
