"""The fault-injection suite: real HTTP on 127.0.0.1, a test server scripted to fail, and what the engine
does about each fault, as the run record shows it. Delays are milliseconds so the suite stays fast."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from flowrunner import Engine, OpenAITransport
from flowrunner._cli import main
from flowrunner._ratelimit import RateLimiter
from flowrunner.testing import ChatServer, Limits, Reply, faults

from conftest import clean_env

FLOW = """
    name: faults
    model: gpt-4o-mini
    retry: {max_attempts: 4, backoff: {initial: 5ms, max: 20ms}}
    functions:
      get_current_weather:
        entry: tools:get_current_weather
        parameters:
          type: object
          properties: {location: {type: string}, unit: {type: string, enum: [celsius, fahrenheit]}}
          required: [location]
      explode:
        entry: tools:explode
        parameters: {type: object, properties: {}}
      hang:
        entry: tools:hang
        timeout: 100ms
        parameters: {type: object, properties: {}}
    steps:
      - id: answer
        messages:
          - {role: user, content: "What's the weather in Boston?"}
        functions: [get_current_weather, explode, hang]
        max_rounds: 4
"""

TOOLS = """
    import time

    def get_current_weather(location, unit="fahrenheit"):
        return {"location": location, "temperature": "72", "unit": unit}

    def explode():
        raise RuntimeError("the weather service is down")

    def hang():
        time.sleep(10)
"""


def completion(content: str | None = None, calls: list[tuple[str, Any]] | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                  "function": {"name": name, "arguments": args if isinstance(args, str)
                                               else json.dumps(args)}}
                                 for i, (name, args) in enumerate(calls)]
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": message, "logprobs": None,
                                    "finish_reason": "tool_calls" if calls else "stop"}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def error(status: int, message: str, kind: str, code: str | None, **headers: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}},
                 {k.replace("_", "-"): v for k, v in headers.items()})


RATE_LIMITED = ("Rate limit reached for gpt-4o-mini in organization org-test on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 20ms.")
QUOTA = ("You exceeded your current quota, please check your plan and billing details. For more information "
         "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.")


@pytest.fixture
def flow(make_flow):
    return make_flow(FLOW, tools=TOOLS)


def run(server: ChatServer, flow: Any, *replies: Reply, timeout: float = 5.0):
    server.enqueue(*replies)
    with OpenAITransport(base_url=server.base_url, timeout=timeout) as transport:
        return Engine(transport).run(flow)


def attempts(record: Any, round_index: int = 0) -> list[tuple[int | None, str | None]]:
    return [(a.status, a.code) for a in record.steps[0].rounds[round_index].attempts]


def test_429_with_retry_after_ms_then_success(chat_server, flow):
    record = run(chat_server, flow, error(429, RATE_LIMITED, "requests", "rate_limit_exceeded", retry_after_ms="20"),
                 completion("Sunny."))
    assert record.status == "succeeded", record.error
    assert attempts(record) == [(429, "rate_limit_exceeded"), (200, None)]
    assert record.steps[0].rounds[0].attempts[0].slept == 0.02  # the server's delay, not the backoff
    assert len(chat_server.requests) == 2


def test_500_and_503_then_success(chat_server, flow):
    record = run(chat_server, flow, error(500, "The server had an error.", "server_error", None),
                 error(503, "The engine is currently overloaded, please try again later", "server_error", None),
                 completion("Sunny."))
    assert record.status == "succeeded", record.error
    assert attempts(record) == [(500, None), (503, None), (200, None)]


def test_persistent_503_gives_up_after_max_attempts_and_says_so(chat_server, flow):
    busy = error(503, "The engine is currently overloaded, please try again later", "server_error", None)
    record = run(chat_server, flow, *[busy] * 4)
    assert record.status == "failed" and len(chat_server.requests) == 4
    assert "gave up after 4 attempts (retry.max_attempts)" in record.error["message"]
    assert attempts(record) == [(503, None)] * 4


def test_429_insufficient_quota_is_one_request_exit_1_and_a_billing_message(chat_server, make_flow, capsys,
                                                                           monkeypatch):
    flow = make_flow(FLOW, tools=TOOLS)
    chat_server.enqueue(error(429, QUOTA, "insufficient_quota", "insufficient_quota"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["run", str(flow.path), "--base-url", chat_server.base_url])
    err = capsys.readouterr().err
    assert code == 1 and len(chat_server.requests) == 1
    assert "HTTP 429 insufficient_quota: You exceeded your current quota" in err
    assert "billing" in err and "retrying cannot help" in err
    assert "Traceback" not in err


def test_401_is_one_request_exit_1_and_says_how_to_set_the_key(make_flow, capsys, monkeypatch):
    flow = make_flow(FLOW, tools=TOOLS)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0123456789")
    with ChatServer(api_key="sk-right-key") as server:
        code = main(["run", str(flow.path), "--base-url", server.base_url])
        sent = len(server.requests)
    err = capsys.readouterr().err
    assert code == 1 and sent == 1
    assert "HTTP 401 invalid_api_key: Incorrect API key provided" in err
    assert "hint: set OPENAI_API_KEY to a valid key" in err
    assert "sk-wrong-key-0123456789" not in err


def test_connection_refused_is_retried_then_reported(flow):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with OpenAITransport(base_url=f"http://127.0.0.1:{port}/v1", timeout=2) as transport:
        record = Engine(transport).run(flow)
    assert record.status == "failed" and record.error["type"] == "APIConnectionError"
    assert f"no answer from http://127.0.0.1:{port}/v1" in record.error["message"]
    assert "gave up after 4 attempts" in record.error["message"]
    assert [a.error for a in record.steps[0].rounds[0].attempts] == ["APIConnectionError"] * 4


def test_invalid_tool_arguments_then_correction(chat_server, flow):
    record = run(chat_server, flow, completion(calls=[("get_current_weather", '{"location": "Boston", "unit": "kelvin"')]),
                 completion(calls=[("get_current_weather", {"location": "Boston", "unit": "kelvin"})]),
                 completion(calls=[("get_current_weather", {"location": "Boston"})]),
                 completion("72 in Boston."))
    assert record.status == "succeeded", record.error
    first, second, third, _ = record.steps[0].rounds
    assert "arguments are not valid JSON" in first.calls[0].error
    assert "unit: 'kelvin' is not one of ['celsius', 'fahrenheit']" in second.calls[0].error
    assert third.calls[0].result["temperature"] == "72"
    told = [m for m in chat_server.requests[2].body["messages"] if m["role"] == "tool"][-1]["content"]
    assert told.startswith("Error: invalid arguments for get_current_weather: unit: 'kelvin'")


def test_arguments_with_a_number_too_long_to_read_are_invalid_arguments_not_a_crash(chat_server, flow):
    huge = '{"location": "Boston", "unit": ' + "9" * 5000 + "}"
    record = run(chat_server, flow, completion(calls=[("get_current_weather", huge)]), completion("Sorry."))
    assert record.status == "succeeded", record.error
    error = record.steps[0].rounds[0].calls[0].error
    assert error == ("invalid arguments for get_current_weather: arguments are not valid JSON (a number of "
                     "5,000 digits, more than the 4,300 a number may have)")
    told = chat_server.requests[1].body["messages"][-1]["content"]
    assert told.startswith("Error: invalid arguments for get_current_weather: arguments are not valid JSON")


def test_a_function_that_raises_is_reported_to_the_model(chat_server, flow):
    record = run(chat_server, flow, completion(calls=[("explode", {})]), completion("The service is down."))
    assert record.status == "succeeded", record.error
    assert "RuntimeError: the weather service is down" in record.steps[0].rounds[0].calls[0].error
    told = chat_server.requests[1].body["messages"][-1]
    assert told["content"] == "Error: the function raised RuntimeError: the weather service is down."


def test_a_function_that_hangs_times_out_and_the_run_goes_on(chat_server, flow):
    record = run(chat_server, flow, completion(calls=[("hang", {})]), completion("No answer in time."))
    assert record.status == "succeeded", record.error
    assert "did not finish within its timeout of 100ms" in record.steps[0].rounds[0].calls[0].error


COUNTED = """
    model: gpt-4o-mini
    functions:
      lookup:
        entry: tools:lookup
        parameters: {type: object, properties: {n: {type: integer}}, required: [n]}
    steps:
      - id: answer
        messages: [{role: user, content: "Look everything up."}]
        functions: [lookup]
"""

COUNTING_TOOLS = """
    looked_up = []

    def lookup(n):
        looked_up.append(n)
        return n
"""


@pytest.mark.parametrize("where, limit, calls", [(None, 32, 5000), ("step", 3, 10), ("flow", 4, 10)])
def test_calls_over_max_calls_are_not_run_and_each_gets_a_reply_saying_so(where, limit, calls, chat_server,
                                                                          make_flow):
    import sys

    text = COUNTED
    if where == "step":
        text += f"        max_calls: {limit}\n"
    elif where == "flow":
        text = text.replace("    model: gpt-4o-mini\n", f"    model: gpt-4o-mini\n    max_calls: {limit}\n")
    flow = make_flow(text, tools=COUNTING_TOOLS)
    chat_server.enqueue(completion(calls=[("lookup", {"n": n}) for n in range(calls)]), completion("Done."))
    shown = []
    with OpenAITransport(base_url=chat_server.base_url) as transport:
        record = Engine(transport, on_event=lambda e: shown.append(e) if e.kind == "call" else None).run(flow)
    assert record.status == "succeeded", record.error
    assert len(shown) == limit + 1 and "max_calls" in shown[-1].call.error  # one event stands for the calls not run
    tools = sys.modules[flow.functions["lookup"].entry.partition(":")[0]]
    assert sorted(tools.looked_up) == list(range(limit))  # only the first `limit` ran
    told = [m for m in chat_server.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in told] == [f"call_{n}" for n in range(calls)]  # every call answered
    assert [m["content"] for m in told[:limit]] == [str(n) for n in range(limit)]
    refusal = (f"Error: not run: the response asked for {calls} function calls, more than the {limit} "
               f"allowed at once (max_calls). Call again with at most {limit}, if still needed.")
    assert all(m["content"] == refusal for m in told[limit:])
    refused = record.steps[0].rounds[0].calls[limit:]
    assert len(refused) == calls - limit and all(c.error and "max_calls" in c.error for c in refused)


def test_max_rounds_fails_with_a_hint(chat_server, flow):
    again = completion(calls=[("get_current_weather", {"location": "Boston"})])
    record = run(chat_server, flow, again, again, again, again)
    assert record.status == "failed" and record.error["type"] == "MaxRoundsError"
    assert len(chat_server.requests) == 4


def test_an_html_error_page_from_a_proxy_reads_well(chat_server, flow):
    page = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    record = run(chat_server, flow, *[Reply(502, page, content_type="text/html")] * 4)
    assert record.status == "failed"
    assert record.error["message"].startswith("HTTP 502: 502 Bad Gateway (an HTML page, not an API answer")


# -- faults in the connection -------------------------------------------------------------------------

@pytest.mark.parametrize("fault, error", [
    (faults.dropped(), "APIConnectionError"),
    (faults.connection_reset(), "APIConnectionError"),
    (faults.truncated(), "APIConnectionError"),
    (faults.timeout_reply(), "APITimeoutError"),
])
def test_connection_faults_are_retried_then_succeed(chat_server, flow, fault, error):
    record = run(chat_server, flow, fault, completion("Sunny."), timeout=0.3)
    assert record.status == "succeeded", record.error
    assert [(a.status, a.error) for a in record.steps[0].rounds[0].attempts] == [(None, error), (200, None)]
    assert len(chat_server.requests) == 2


def test_a_timeout_that_persists_gives_up_and_says_so(chat_server, flow):
    record = run(chat_server, flow, *[faults.timeout_reply()] * 4, timeout=0.1)
    assert record.status == "failed" and record.error["type"] == "APITimeoutError"
    assert record.error["message"].startswith("the request timed out after 0.1 s (--timeout)")
    assert "gave up after 4 attempts" in record.error["message"]


def test_a_slow_answer_within_the_timeout_is_just_slow(chat_server, flow):
    record = run(chat_server, flow, faults.delayed(completion("Sunny."), 0.05), timeout=2)
    assert record.status == "succeeded" and len(record.steps[0].rounds[0].attempts) == 1


# -- rate limits the server enforces -------------------------------------------------------------------

LIMITED = """
    name: limited
    model: gpt-4o-mini
    rate_limit: {rpm: 600}
    retry: {max_attempts: 1}
    steps:
      - id: a
        messages: [{role: user, content: "Hello there"}]
"""


def run_many(flow: Any, server: ChatServer, runs: int, threads: int = 1) -> list[Any]:
    """`runs` runs of the flow through one engine (one limiter), from `threads` threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    with OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter())
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda _: engine.run(flow), range(runs)))


def test_a_flow_at_the_servers_rpm_gets_no_429(make_flow):
    # The server allows 600 RPM as 10 requests in any 1-second window, as OpenAI enforces short windows.
    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server:
        records = run_many(make_flow(LIMITED), server, runs=25, threads=4)
        stats = server.stats
    assert [r.status for r in records] == ["succeeded"] * 25
    assert stats.rejected == 0 and stats.accepted == 25
    assert stats.most_in(1.0) <= 10


@pytest.mark.parametrize("declared, status", [("    rate_limit: {rpm: 600}\n", "succeeded"), ("", "failed")])
def test_a_429_met_while_pacing_at_a_declared_limit_is_sent_again_even_with_retries_off(make_flow, chat_server,
                                                                                        declared, status):
    # A busy machine or network delays one request and the next lands a little early in the server's
    # window: the pacing's slip, not the request's failure. Without a declared limit, retries off mean off.
    flow = make_flow(LIMITED.replace("    rate_limit: {rpm: 600}\n", declared))
    chat_server.enqueue(faults.rate_limited(retry_after_ms=10, limit=600), completion("Hello."))
    with OpenAITransport(base_url=chat_server.base_url, timeout=5) as transport:
        record = Engine(transport, limiter=RateLimiter()).run(flow)
    assert record.status == status, record.error
    assert attempts(record)[0] == (429, "rate_limit_exceeded")
    assert len(chat_server.requests) == (2 if declared else 1)


def test_a_429_met_while_pacing_at_the_servers_stated_limit_is_sent_again_too(make_flow):
    # Nothing declared, but the server said its limit (x-ratelimit-limit-requests): the run paces at it,
    # so a 429 then is the same slip as at a declared limit, and retries off still get the one resend.
    flow = make_flow(LIMITED.replace("    rate_limit: {rpm: 600}\n", ""))
    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server, \
            OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        engine = Engine(transport, limiter=RateLimiter())
        assert engine.run(flow).status == "succeeded"  # its answer states the limit
        assert engine.limiter.learned.rpm == 600
        server.enqueue(faults.rate_limited(retry_after_ms=10, limit=600), completion("Hello."))
        record = engine.run(flow)
    assert record.status == "succeeded", record.error
    assert attempts(record)[0] == (429, "rate_limit_exceeded")


def test_the_same_requests_unpaced_trip_429s():
    # The control for the test above: the server does refuse 25 requests sent as fast as 4 threads can.
    import openai
    from concurrent.futures import ThreadPoolExecutor

    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        def ask(_: int) -> Any:
            try:
                return client.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": "Hello there"}])
            except openai.RateLimitError as exc:
                return exc
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(25)))
        stats = server.stats
    assert stats.rejected > 0 and sum(isinstance(a, openai.RateLimitError) for a in answers) == stats.rejected


def test_a_declared_limit_above_the_servers_follows_the_servers_budget(make_flow):
    # Declared 10x too high: paced at 100/s the runs would trip 429s; the server's stated limit and
    # remaining count hold them back instead.
    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server:
        records = run_many(make_flow(LIMITED.replace("rpm: 600", "rpm: 6000").replace(
            "max_attempts: 1", "max_attempts: 4")), server, runs=25, threads=4)
        stats = server.stats
    assert [r.status for r in records] == ["succeeded"] * 25
    assert stats.rejected <= 4, stats.rejected_429  # only requests already on their way as the budget ran out


def test_without_a_declared_limit_429s_are_waited_out(make_flow):
    # Retries on (the default), no declared limit: the server's retry-after and headers pace the runs.
    flow = make_flow(LIMITED.replace("    rate_limit: {rpm: 600}\n", "").replace("retry: {max_attempts: 1}",
                                                                          "retry: {max_attempts: 10}"))
    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server:
        records = run_many(flow, server, runs=25, threads=4)
    assert [r.status for r in records] == ["succeeded"] * 25


def test_a_flow_at_the_servers_tpm_gets_no_429(make_flow):
    # 100 tokens in any 1-second window; a run here costs about 9 (the server charges the answer's usage).
    with ChatServer(limits=Limits(tpm=6000, window=1.0)) as server:
        records = run_many(make_flow(LIMITED.replace("rpm: 600", "tpm: 6000")), server, runs=14, threads=3)
        stats = server.stats
    assert [r.status for r in records] == ["succeeded"] * 14, [r.error for r in records]
    assert stats.rejected == 0
    assert 5 <= records[0].usage["total_tokens"] <= 12


def test_the_cli_says_each_retry_on_stderr(chat_server, make_flow, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make_flow(FLOW, tools=TOOLS)
    chat_server.enqueue(faults.rate_limited(retry_after_ms=10), completion("Sunny."))
    assert main(["run", str(flow.path), "--base-url", chat_server.base_url, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == "Sunny.\n"
    assert err.startswith("  [answer] retrying in 10ms after HTTP 429 rate_limit_exceeded: Rate limit reached")


# -- --rate-limit on the command line -------------------------------------------------------------------

TWELVE_STEPS = "    name: twelve\n    model: gpt-4o-mini\n    retry: {max_attempts: 1}\n    steps:\n" + "".join(
    f"      - id: s{i}\n        messages: [{{role: user, content: \"Hello number {i}\"}}]\n" for i in range(12))


def test_the_cli_rate_limit_paces_a_flow_that_declares_none(make_flow, capsys, monkeypatch):
    # 12 sequential requests against 600 RPM enforced as 10 in any second: paced at --rate-limit rpm=600.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make_flow(TWELVE_STEPS)
    with ChatServer(limits=Limits(rpm=600, window=1.0)) as server:
        code = main(["run", str(flow.path), "--base-url", server.base_url, "--rate-limit", "rpm=600", "--quiet"])
        stats = server.stats
    assert code == 0, capsys.readouterr().err
    assert stats.accepted == 12 and stats.rejected == 0
    assert stats.most_in(1.0) <= 10
    gaps = [b - a for a, b in zip(stats.accepted_at, stats.accepted_at[1:])]
    assert min(gaps) >= 0.05  # paced about 100 ms apart (with room for a busy machine); unpaced, they are ~2 ms


def test_the_cli_rate_limit_overrides_the_flows(make_flow, capsys, monkeypatch):
    # The flow declares 120 RPM (500 ms apart); --rate-limit rpm=6000 (10 ms apart) replaces it.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make_flow(TWELVE_STEPS.replace("    steps:\n", "    rate_limit: {rpm: 120}\n    steps:\n"))
    with ChatServer() as server:
        code = main(["run", str(flow.path), "--base-url", server.base_url, "--rate-limit", "rpm=6000", "--quiet"])
        stats = server.stats
    assert code == 0, capsys.readouterr().err
    gaps = [b - a for a, b in zip(stats.accepted_at, stats.accepted_at[1:])]
    assert stats.accepted == 12 and max(gaps) < 0.25, gaps


# -- daily limits (rpd) --------------------------------------------------------------------------------

THREE_STEPS = TWELVE_STEPS.replace("name: twelve", "name: daily\n    rate_limit: {rpd: 2}").split("      - id: s3")[0]


def test_a_declared_daily_limit_refuses_the_third_request_at_once(make_flow, capsys, monkeypatch):
    import time

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make_flow(THREE_STEPS)
    assert [s.id for s in flow.steps] == ["s0", "s1", "s2"]
    with ChatServer() as server:
        started = time.monotonic()
        code = main(["run", str(flow.path), "--base-url", server.base_url, "--json"])
        elapsed = time.monotonic() - started
        sent = len(server.requests)
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert code == 1 and sent == 2 and elapsed < 2
    assert [s["status"] for s in record["steps"]] == ["succeeded", "succeeded", "failed"]
    assert record["error"]["type"] == "RateLimitError" and record["error"]["step"] == "s2"
    assert record["error"]["message"].startswith("the daily request limit (rpd=2) is used up: 2 requests in "
                                                 "the last 24 hours; the next one frees up in ")
    assert "error in step 's2': the daily request limit (rpd=2) is used up" in err


def test_a_servers_daily_limit_429_is_not_retried(tmp_path):
    # Two runs, each in a process of its own (a fresh client), against a server allowing 1 request a day.
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "daily.yaml"
    path.write_text(textwrap.dedent(TWELVE_STEPS.replace("retry: {max_attempts: 1}", "retry: {max_attempts: 5}")
                                    .split("      - id: s1")[0]))
    env = clean_env()
    with ChatServer(limits=Limits(rpd=1)) as server:
        runs = [subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", str(path), "--base-url",
                                server.base_url], capture_output=True, text=True, env=env, timeout=30)
                for _ in range(2)]
        stats, sent = server.stats, len(server.requests)
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 1 and sent == 2
    assert stats.accepted == 1 and stats.rejected_429["rpd"] == 1
    err = runs[1].stderr
    assert "HTTP 429 rate_limit_exceeded: Rate limit reached for gpt-4o-mini" in err and "(RPD)" in err
    assert "(the daily request limit is used up: it resets in hours, not within a run)" in err
    assert "retrying" not in err and "Traceback" not in err


def test_a_servers_spent_daily_budget_does_not_put_the_run_to_sleep_for_a_day(make_flow):
    slept: list[float] = []
    flow = make_flow(THREE_STEPS.replace("    rate_limit: {rpd: 2}\n", ""))
    with ChatServer(limits=Limits(rpd=1)) as server, OpenAITransport(base_url=server.base_url, timeout=5) as transport:
        # The limiter's sleep only notes the wait, so a regression shows as a number instead of a hang.
        record = Engine(transport, limiter=RateLimiter(sleep=slept.append)).run(flow)
        asked = len(server.requests)
    assert record.status == "failed" and record.error["type"] == "RateLimitError"
    assert "likely a daily limit" in record.error["message"] and asked == 1
    assert max(slept, default=0.0) < 60, f"the run would have slept {max(slept):.0f} s"


# -- billing: a 429 no wait can cure -------------------------------------------------------------------

BILLING_CODES = ["insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "credit_balance_exhausted",
                 "hard_spend_limit_exceeded", "soft_spend_limit_exceeded", "spend_limit_exceeded"]
NO_CREDIT = "Your account cannot make this request right now."  # says nothing of billing itself


def run_refused(server: ChatServer, flow: Any, code: str, capsys: Any) -> tuple[int, str]:
    server.enqueue(*[error(429, NO_CREDIT, code, code)] * 4)  # a retry would meet the same refusal
    exit_code = main(["run", str(flow.path), "--base-url", server.base_url, "--quiet"])
    return exit_code, capsys.readouterr().err


@pytest.mark.parametrize("code", BILLING_CODES)
def test_a_billing_429_is_one_request_and_says_why_it_is_not_retried(chat_server, flow, code, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    exit_code, err = run_refused(chat_server, flow, code, capsys)
    assert exit_code == 1 and len(chat_server.requests) == 1
    assert f"HTTP 429 {code}: {NO_CREDIT}" in err
    assert "(a used-up quota is not retried: waiting does not add credit)" in err
    assert "retrying in" not in err and "Traceback" not in err


def test_a_billing_type_with_no_code_is_not_retried_either(chat_server, flow, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_server.enqueue(*[error(429, NO_CREDIT, "insufficient_quota", None)] * 4)
    assert main(["run", str(flow.path), "--base-url", chat_server.base_url, "--quiet"]) == 1
    assert len(chat_server.requests) == 1
    assert "(a used-up quota is not retried: waiting does not add credit)" in capsys.readouterr().err


@pytest.mark.parametrize("code", BILLING_CODES)
def test_a_billing_429_points_at_the_billing_page(chat_server, flow, code, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _, err = run_refused(chat_server, flow, code, capsys)
    assert "hint: the account has no credit left: check your plan and billing details at " \
           "https://platform.openai.com/account/billing" in err
