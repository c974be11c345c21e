"""The cost of a run: token usage at the model's price (the user's, else the table's), None and said
once when a model has none, over real HTTP against the test server and with real OpenAI responses."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowrunner import Engine, FlowValidationError, OpenAITransport, load_flow
from flowrunner._pricing import Price, cost_of, parse_price, total
from flowrunner._ratelimit import RateLimiter
from flowrunner.testing import ChatServer, Reply

from conftest import ROOT, clean_env

REAL = Path(__file__).parent / "data" / "real-responses"
PLAIN = json.loads((REAL / "01-plain-answer-usage.json").read_text())  # gpt-4o-2024-08-06: 14 prompt, 30 completion


def run(flow, server, **engine):
    with OpenAITransport(base_url=server.base_url) as transport:
        return Engine(transport, limiter=RateLimiter(), **engine).run(flow)


def with_cached(body, cached):
    """The real answer's body with `cached` of its prompt tokens cached (no recorded answer has any)."""
    body = copy.deepcopy(body)
    body["usage"]["prompt_tokens_details"]["cached_tokens"] = cached
    return body


# -- the arithmetic -------------------------------------------------------------------------------

def test_a_real_usage_costs_its_tokens_at_the_price_per_million():
    usage = PLAIN["body"]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    price = {"gpt-4o": Price(input=2.5, output=10.0, cached_input=1.25)}
    assert cost_of("gpt-4o-2024-08-06", usage, prices=price) == pytest.approx(14 * 2.5e-6 + 30 * 10e-6)
    assert cost_of("gpt-4o-2024-08-06", usage, prices=price, batch=True) == pytest.approx((14 * 2.5e-6 + 30 * 10e-6) / 2)


def test_cached_prompt_tokens_are_charged_at_the_cached_price_or_else_the_input_price():
    usage = with_cached(PLAIN["body"], 10)["usage"]
    cached = Price(input=2.0, output=8.0, cached_input=0.5)
    assert cost_of("m", usage, prices={"m": cached}) == pytest.approx((4 * 2.0 + 10 * 0.5 + 30 * 8.0) / 1e6)
    assert cost_of("m", usage, prices={"m": Price(input=2.0, output=8.0)}) == pytest.approx((14 * 2.0 + 30 * 8.0) / 1e6)


def test_the_table_knows_openais_models_by_their_dated_names_and_halves_batch_prices():
    usage = with_cached(PLAIN["body"], 10)["usage"]
    dated, plain = cost_of("gpt-4o-2024-08-06", usage), cost_of("gpt-4o", usage)
    assert dated is not None and dated > 0 and dated == plain
    assert cost_of("gpt-4o", PLAIN["body"]["usage"]) > dated  # its cached tokens cost less
    assert cost_of("gpt-4o", usage, batch=True) == pytest.approx(dated / 2)


def test_no_price_no_usage_or_a_hostile_usage_is_no_cost_never_a_guess():
    usage = PLAIN["body"]["usage"]
    assert cost_of("my-local-llama", usage) is None
    assert cost_of("x" * 100_000, usage) is None
    assert cost_of("gpt-4o", None) is None
    assert cost_of("gpt-4o", {"prompt_tokens": "14", "completion_tokens": 30}) is None
    assert cost_of("gpt-4o", {"prompt_tokens": True, "completion_tokens": 30}) is None
    free_cache = {"m": Price(1.0, 1.0, 0.0)}
    more = {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 10}}
    assert cost_of("m", more, prices=free_cache) == pytest.approx(1e-6)  # at most every prompt token is cached
    absurd = {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 10**30}}
    assert cost_of("m", absurd, prices=free_cache) == pytest.approx(6e-6)  # no count: none cached


def test_a_user_price_beats_the_table_and_total_is_none_when_any_part_is():
    usage = PLAIN["body"]["usage"]
    mine = cost_of("gpt-4o", usage, prices={"gpt-4o": Price(input=0.0, output=1.0)})
    assert mine == pytest.approx(30e-6) and mine != cost_of("gpt-4o", usage)
    assert total([1e-6, 2e-6]) == pytest.approx(3e-6) and total([1e-6, None]) is None and total([]) == 0


@pytest.mark.parametrize("text, message", [
    ("gpt-4o-mini", "expected MODEL=input:PRICE"),
    ("=input:1,output:2", "expected MODEL=input:PRICE"),
    ("m=input:1", "output price missing"),
    ("m=input:1,output:x", "output must be a number"),
    ("m=input:1,output:-2", "must be a number from 0"),
    ("m=input:1,output:nan", "must be a number from 0"),
    ("m=input:1,output:2,cache:1", "expected input:PRICE, output:PRICE or cached_input:PRICE"),
    ("m=input:1,input:2,output:2", "input is given twice"),
])
def test_a_bad_price_on_the_command_line_says_what_is_expected(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_price(text)
    assert parse_price("gpt-4o-mini=input:0.15, output:0.6,cached_input:0.075") == (
        "gpt-4o-mini", Price(input=0.15, output=0.6, cached_input=0.075))


# -- runs -----------------------------------------------------------------------------------------

TWO_MODELS = """
name: two
prices:
  {priced}: {{input: 1.0, output: 2.0, cached_input: 0.5}}
steps:
  - id: first
    model: {first}
    messages: [{{role: user, content: hello there}}]
  - id: second
    model: {second}
    messages: [{{role: user, content: "{{{{ steps.first.content }}}}"}}]
outputs: {{text: "{{{{ steps.second.content }}}}"}}
"""


def test_a_run_costs_its_rounds_with_cached_tokens_from_a_real_answer(make_flow, chat_server):
    flow = make_flow(TWO_MODELS.format(priced="gpt-4o", first="gpt-4o", second="gpt-4o"))
    chat_server.enqueue(Reply(body=with_cached(PLAIN["body"], 10)))  # the first step's answer
    record = run(flow, chat_server)
    assert record.status == "succeeded", record.error
    first, second = record.steps
    assert first.rounds[0].cost == pytest.approx((4 * 1.0 + 10 * 0.5 + 30 * 2.0) / 1e6)  # the flow's price
    usage = second.rounds[0].usage
    assert second.cost == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    assert record.cost == pytest.approx(first.cost + second.cost)
    assert record.to_dict()["cost"] == record.cost and record.to_dict()["steps"][0]["rounds"][0]["cost"]

    cli_price = run(flow, chat_server, prices={"gpt-4o": Price(input=3.0, output=3.0)})
    assert cli_price.cost == pytest.approx(3 * (cli_price.usage["total_tokens"]) / 1e6)  # the engine's beat the flow's


def test_a_run_partly_unpriced_has_no_cost_not_a_partial_sum(make_flow, chat_server):
    flow = make_flow(TWO_MODELS.format(priced="gpt-4o", first="gpt-4o", second="my-local-llama"))
    record = run(flow, chat_server)
    assert record.status == "succeeded", record.error
    assert record.steps[0].cost is not None and record.steps[1].cost is None
    assert record.cost is None


def test_a_failed_request_costs_nothing(make_flow, chat_server):
    from flowrunner.testing import faults

    flow = make_flow(TWO_MODELS.format(priced="gpt-4o", first="gpt-4o", second="gpt-4o").replace(
        "name: two", "name: two\nretry: {max_attempts: 1}"))
    chat_server.enqueue(faults.server_error())
    record = run(flow, chat_server)
    assert record.status == "failed" and record.steps[0].rounds[0].cost == 0 and record.cost == 0


# -- the command line -----------------------------------------------------------------------------

def flowrun(*args):
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.server
def test_run_prints_tokens_and_cost_and_says_once_why_a_cost_is_unknown(tmp_path):
    flow = tmp_path / "two.yaml"
    flow.write_text(TWO_MODELS.format(priced="gpt-4o", first="gpt-4o", second="gpt-4o"))
    with ChatServer() as server:
        priced = flowrun(str(flow), "--base-url", server.base_url)
        overridden = flowrun(str(flow), "--base-url", server.base_url, "--price", "gpt-4o=input:4,output:4")
        unknown = flowrun(str(flow), "--base-url", server.base_url, "--model", "my-local-llama", "--json")
    assert priced.returncode == 0, priced.stderr
    line = re.fullmatch(r"(\d+) tokens \((\d+) prompt, (\d+) completion\), \$(0\.\d{6})\n", priced.stderr)
    assert line, priced.stderr
    tokens, prompt, completion = (int(n) for n in line.groups()[:3])
    assert float(line[4]) == pytest.approx((prompt * 1.0 + completion * 2.0) / 1e6, abs=1e-6)
    assert f"completion), ${tokens * 4 / 1e6:.6f}\n" in overridden.stderr
    assert unknown.returncode == 0 and json.loads(unknown.stdout)["cost"] is None  # stdout: the record only
    assert unknown.stderr.count("cost unknown") == 1  # two unpriced rounds, one note
    assert "cost unknown: no price for model 'my-local-llama'\n  hint: set one in the flow (prices:" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_the_command_that_resumes_a_batch_keeps_its_prices():
    import argparse

    from flowrunner._cli.batch import resume_command

    prices = [parse_price("m=input:0.15,output:0.6,cached_input:0.075"), parse_price("n=input:1e-05,output:2")]
    args = argparse.Namespace(flow="f.yaml", inputs_file="in.jsonl", out="out.jsonl", retry_failed=False,
                              concurrency=8, model=None, base_url=None, cassette=None, record_mode=None,
                              rate_limit=None, timeout=600.0, deadline=None, full_record=False, prices=prices)
    command = resume_command(args)
    assert command.endswith("--resume --price m=input:0.15,output:0.6,cached_input:0.075 "
                            "--price n=input:1e-05,output:2.0")
    again = [parse_price(word) for word in command.split() if "=input:" in word]
    assert again == prices


def test_a_bad_price_is_a_usage_error_on_every_command():
    for command in ("run", "chat", "batch", "test"):
        done = flowrun(command, "flows/hello.yaml", "--price", "gpt-4o-mini=input:1")
        assert done.returncode == 2 and "output price missing" in done.stderr, (command, done.stderr)


@pytest.mark.parametrize("prices, message", [
    ("{gpt-4o: {input: -1, output: 2}}", ":3:26: error: prices['gpt-4o'].input: expected at least 0, got -1"),
    ("{gpt-4o: {input: 1}}", ":3:18: error: prices['gpt-4o'] is missing required key 'output'"),
    ("{gpt-4o: {input: 1, output: 2, cache: 1}}", "cache"),
    ("{gpt-4o: {input: '1', output: 2}}", ":3:26: error: prices['gpt-4o'].input: expected a number, got '1'"),
])
def test_a_bad_price_in_a_flow_is_located(tmp_path, prices, message):
    path = tmp_path / "flow.yaml"
    path.write_text(f"name: f\nmodel: gpt-4o\nprices: {prices}\nsteps:\n  - id: s\n"
                    "    messages: [{role: user, content: hi}]\n")
    with pytest.raises(FlowValidationError) as caught:
        load_flow(path)
    text = str(caught.value)
    assert f"{path}:3:" in text and message in text, text


@pytest.mark.parametrize("model", ["gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4.1-nano", "o3"])
@pytest.mark.parametrize("tokens", [(1234, 1024, 57), (10, 0, 0), (999_999, 0, 999_999), (5, 5, 1)])
def test_a_flat_table_price_is_priced_from_its_rates_exactly_as_the_table_prices_it(model, tokens):
    from flowrunner import _pricing

    assert _pricing._flat_rates(model) is not None
    assert _pricing._table_cost(model, tokens) == _pricing._looked_up(model, tokens)


def test_a_tiered_table_price_is_looked_up_each_time(monkeypatch):
    from decimal import Decimal

    from flowrunner import _pricing

    def tiered(model, tokens):  # dearer per token past 200k prompt tokens, as long-context prices are
        prompt, _, completion = tokens
        rate = Decimal("0.000002") if prompt > 200_000 else Decimal("0.000001")
        return prompt * rate + completion * Decimal("0.000004")

    monkeypatch.setattr(_pricing, "_looked_up", tiered)
    monkeypatch.setattr(_pricing, "_FLAT", {})
    assert _pricing._flat_rates("long-context") is None
    assert _pricing._table_cost("long-context", (300_000, 0, 0)) == Decimal("0.6")
    assert _pricing._table_cost("long-context", (1_000, 0, 0)) == Decimal("0.001")
