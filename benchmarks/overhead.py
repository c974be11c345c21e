"""Engine overhead: flowrunner against the bare `openai` SDK making the same requests to the same server.

    python benchmarks/overhead.py [--reps 200]

One run of `flows/weather.yaml` is two requests and one function call: the model asks for
get_current_weather, the function runs, the model answers. The bare side does the same by hand,
calling the same Python function, and reads each answer the way flowrunner does: as raw JSON
(`with_raw_response`, then `json.loads` of the body), not through the SDK's pydantic models. That
is the fairest baseline; the SDK's usual `create()`, which builds the models, is shown as well.
The server is the project's test server (`ChatServer`, not checking its own answers) in a child
process on 127.0.0.1, so its work is not in the client's CPU figure; it is in the wall clock of
both sides alike. Before timing, the bodies the sides send are compared on an in-process server.
The sides take turns in blocks of 10 runs (flowrunner, bare, bare, flowrunner, ...), so drift hits
them alike while each runs as it would in a program of its own, with its own code in the CPU's
caches (turns of a single run would charge each side for the other's evictions, the larger most).
Per request, each side's median wall-clock time and median CPU time of this (the client's)
process; the goal is flowrunner / bare raw JSON <= 1.05 on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "flows"))  # weather_tools, as the flow imports it
GOAL = 1.05
BLOCK = 10  # runs of one side in a row

SERVE = """
import threading
from flowrunner.testing import ChatServer
server = ChatServer(port=0, validate_responses=False).start()
print(server.base_url, flush=True)
threading.Event().wait()
"""


def bare_run(ask: Callable[[list[dict[str, Any]]], dict[str, Any]], functions: dict[str, Callable[..., Any]],
             messages: list[dict[str, Any]]) -> str:
    """The weather flow by hand: ask, run the calls the model asks for, send the results, ask again."""
    messages = list(messages)
    for _ in range(5):
        message = ask(messages)
        if not message.get("tool_calls"):
            return str(message.get("content"))
        messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
            for c in message["tool_calls"]]})
        for call in message["tool_calls"]:
            result = functions[call["function"]["name"]](**json.loads(call["function"]["arguments"]))
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": result if isinstance(result, str) else json.dumps(result)})
    raise RuntimeError("too many rounds")


def raw_asker(client: Any, request: dict[str, Any]) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """One request read as raw JSON, as flowrunner reads it."""
    def ask(messages: list[dict[str, Any]]) -> dict[str, Any]:
        raw = client.chat.completions.with_raw_response.create(model=request["model"], messages=messages,
                                                               tools=request["tools"])
        message: dict[str, Any] = json.loads(raw.content)["choices"][0]["message"]
        return message
    return ask


def pydantic_asker(client: Any, request: dict[str, Any]) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """One request through the SDK's models, as most code reads it."""
    def ask(messages: list[dict[str, Any]]) -> dict[str, Any]:
        response = client.chat.completions.create(model=request["model"], messages=messages, tools=request["tools"])
        message = response.choices[0].message
        return {"content": message.content, "tool_calls": [
            {"id": c.id, "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls or []]}
    return ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200, help="runs of each side (default: 200)")
    reps = parser.parse_args().reps

    import openai

    from flowrunner import Engine, OpenAITransport, load_flow
    from flowrunner.testing import ChatServer

    flow = load_flow(ROOT / "flows" / "weather.yaml")
    step = flow.steps[0]
    question = "What's the weather in Boston?"
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}]
    request = {"model": flow.model, "tools": [flow.functions[name].tool() for name in step.functions]}
    functions = {name: spec.func for name, spec in flow.functions.items() if spec.func is not None}

    def sides(base_url: str) -> dict[str, Callable[[], None]]:
        engine = Engine(OpenAITransport(base_url=base_url))
        client = openai.OpenAI(base_url=base_url, api_key="no-key", max_retries=0)
        raw, parsed = raw_asker(client, request), pydantic_asker(client, request)

        def flowrunner_side() -> None:
            record = engine.run(flow, {"question": question})
            assert record.status == "succeeded", record.error

        return {"flowrunner": flowrunner_side, "bare SDK, raw JSON": lambda: bare_run(raw, functions, messages) and None,
                "bare SDK, pydantic": lambda: bare_run(parsed, functions, messages) and None}

    # Same requests: the bodies an in-process server received from one run of each side.
    with ChatServer() as server:
        bodies = []
        for run in sides(server.base_url).values():
            before = len(server.requests)
            run()
            bodies.append([r.body for r in server.requests[before:]])
        assert all(b == bodies[0] for b in bodies), "the sides sent different requests"
        per_run = len(bodies[0])

    child = subprocess.Popen([sys.executable, "-c", SERVE], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        runs = sides(child.stdout.readline().strip())
        for _ in range(20):  # warm up every side (connections, caches)
            for run in runs.values():
                run()
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for block in range(reps // BLOCK):
            for name in names if block % 2 == 0 else reversed(names):
                for _ in range(BLOCK):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    runs[name]()
                    cpu[name].append((time.process_time() - start_cpu) / per_run)
                    wall[name].append((time.perf_counter() - start) / per_run)
    finally:
        child.terminate()
        child.wait()

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, {reps} runs per side, "
          f"{per_run} requests and 1 function call per run; server in a child process; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'side':20} {'wall median':>12} {'wall p90':>9} {'client CPU median':>17} {'CPU mean':>9}   per request")
    for name in names:
        print(f"{name:20} {statistics.median(wall[name]) * 1000:9.3f} ms "
              f"{statistics.quantiles(wall[name], n=10)[-1] * 1000:6.3f} ms "
              f"{statistics.median(cpu[name]) * 1000:14.3f} ms {statistics.mean(cpu[name]) * 1000:6.3f} ms")
    met = True
    for baseline in names[1:]:
        wall_ratio = statistics.median(wall["flowrunner"]) / statistics.median(wall[baseline])
        cpu_ratio = statistics.mean(cpu["flowrunner"]) / statistics.mean(cpu[baseline])
        print(f"flowrunner / {baseline}: wall {wall_ratio:.3f}, client CPU {cpu_ratio:.3f}")
        if baseline == "bare SDK, raw JSON":
            met = wall_ratio <= GOAL and cpu_ratio <= GOAL
    print(f"goal: flowrunner / bare SDK reading raw JSON <= {GOAL} by wall clock and by client CPU: "
          f"{'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
