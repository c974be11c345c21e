"""Engine overhead: flowrunner against the bare `openai` SDK making the same requests to the same server.

    python benchmarks/overhead.py [--reps 200]

One run of `flows/weather.yaml` is two requests and one function call: the model asks for
get_current_weather, the function runs, the model answers. The bare side does the same with
`client.chat.completions.create` in a loop (same bodies, checked before timing), calling the same
Python function. Both talk to the project's test server on 127.0.0.1, started in this process.
Repetitions alternate (flowrunner, bare, bare, flowrunner, ...) so drift hits both sides alike.
Prints the median time per request of each side and their ratio; the goal is a ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "flows"))  # weather_tools, as the flow imports it


def bare_run(client: Any, request: dict[str, Any], functions: dict[str, Callable[..., Any]]) -> str:
    """The weather flow by hand: ask, run the calls the model asks for, send the results, ask again."""
    messages = list(request["messages"])
    for _ in range(5):
        response = client.chat.completions.create(model=request["model"], messages=messages,
                                                  tools=request["tools"])
        message = response.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        messages.append({"role": "assistant", "content": message.content, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls]})
        for call in message.tool_calls:
            result = functions[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": result if isinstance(result, str) else json.dumps(result)})
    raise RuntimeError("too many rounds")


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
    request = {"model": flow.model, "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                 {"role": "user", "content": question}],
               "tools": [flow.functions[name].tool() for name in step.functions]}
    functions = {name: spec.func for name, spec in flow.functions.items() if spec.func is not None}

    with ChatServer() as server:
        engine = Engine(OpenAITransport(base_url=server.base_url))
        client = openai.OpenAI(base_url=server.base_url, api_key="no-key", max_retries=0)

        def flowrunner_side() -> None:
            record = engine.run(flow, {"question": question})
            assert record.status == "succeeded", record.error

        def bare_side() -> None:
            bare_run(client, request, functions)

        # Same requests: compare the bodies the server received from one run of each side.
        before = len(server.requests)
        flowrunner_side()
        ours = [r.body for r in server.requests[before:]]
        before = len(server.requests)
        bare_side()
        theirs = [r.body for r in server.requests[before:]]
        assert ours == theirs, "the two sides sent different requests"
        per_run = len(ours)
        for _ in range(20):  # warm up both (connections, caches)
            flowrunner_side()
            bare_side()
        times: dict[str, list[float]] = {"flowrunner": [], "bare SDK": []}
        sides = {"flowrunner": flowrunner_side, "bare SDK": bare_side}
        for rep in range(reps):
            order = ("flowrunner", "bare SDK") if rep % 2 == 0 else ("bare SDK", "flowrunner")
            for name in order:
                start = time.perf_counter()
                sides[name]()
                times[name].append((time.perf_counter() - start) / per_run)

    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["flowrunner"] / median["bare SDK"]
    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, {reps} runs per side, "
          f"{per_run} requests and 1 function call per run")
    print(f"{'side':12} {'median/request':>15} {'p90/request':>12}")
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name:12} {median[name] * 1000:12.3f} ms {p90 * 1000:9.3f} ms")
    verdict = "met" if ratio <= 1.05 else "missed"
    print(f"ratio flowrunner / bare SDK: {ratio:.3f} (goal <= 1.05: {verdict})")


if __name__ == "__main__":
    main()
