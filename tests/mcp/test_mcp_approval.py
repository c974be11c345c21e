"""`approve: ask` at the terminal: `flowrun run` asks before each call (y / n / always); no terminal, no call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp_helpers import TIME_SERVER, time_flow_text

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def run_on_a_terminal(flow: Path, base_url: str, typed: str) -> tuple[int, str, str]:
    """flowrun with stdin and stderr on a pseudo-terminal (what a user types in `typed`), stdout a pipe."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    process = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "run", str(flow), "--base-url", base_url,
                                "--json"], cwd=ROOT, env=env, stdin=slave, stderr=slave, stdout=subprocess.PIPE,
                               text=True)
    os.close(slave)
    os.write(master, typed.encode())
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return process.returncode, out, seen.decode(errors="replace")


@pytest.mark.parametrize("typed, ran", [("y\n", True), ("n\n", False)])
def test_the_terminal_is_asked_before_each_call(tmp_path, chat_server, typed, ran):
    assert TIME_SERVER is not None
    flow = tmp_path / "time.yaml"
    flow.write_text(time_flow_text(server_keys="approve: ask"))
    code, out, terminal = run_on_a_terminal(flow, chat_server.base_url, typed)
    assert code == 0, terminal
    assert 'run get_current_time (mcp server time) with {"timezone": "Europe/Paris"}? [y]es, [n]o, [a]lways:' \
        in terminal
    import json

    (call,) = json.loads(out)["steps"][0]["rounds"][0]["calls"]
    if ran:
        assert call["error"] is None and call["result"]["timezone"] == "Europe/Paris"
    else:
        assert call["error"] == "not run: the user refused the call" and call["result"] is None


def test_without_a_terminal_the_call_is_refused_and_the_model_told(tmp_path, chat_server):
    flow = tmp_path / "time.yaml"
    flow.write_text(time_flow_text(server_keys="approve: ask"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", str(flow), "--base-url",
                           chat_server.base_url], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "not run: the call needs approval (approve: ask) and there is no one to ask" in done.stderr
    told = chat_server.requests[-1].body["messages"][-1]["content"]
    assert told == "Error: the call needs approval (approve: ask) and there is no one to ask. Do not call it again; " \
                   "answer without it."


def test_approve_ask_holds_for_python_functions_too(make_flow, chat_server):
    from flowrunner import Engine, OpenAITransport

    flow = make_flow("""\
        model: test-model
        functions:
          get_capital:
            entry: tools:get_capital
            approve: ask
            parameters: {type: object, properties: {country: {type: string}}, required: [country]}
        steps:
          - id: a
            functions: [get_capital]
            messages: [{role: user, content: "What is the capital of France?"}]
        """, tools="def get_capital(country):\n    return 'Paris'\n")
    assert flow.functions["get_capital"].approve
    with OpenAITransport(base_url=chat_server.base_url, api_key="k") as transport:
        refused = Engine(transport).run(flow)
        approved = Engine(transport, approve=lambda spec, arguments: spec.server is None).run(flow)
    assert refused.steps[0].rounds[0].calls[0].error.startswith("not run: the call needs approval")
    (call,) = approved.steps[0].rounds[0].calls
    assert (call.result, call.error, call.server) == ("Paris", None, None)
