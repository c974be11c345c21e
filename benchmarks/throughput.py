"""Throughput at a rate limit (benchmark 2): NOT WRITTEN YET, on purpose.

It needs two pieces being built elsewhere at the time of writing: the test server enforcing an
`rpm` limit (answering 429 with OpenAI's headers past it) and flowrunner's client-side rate limiter
in the engine/transport. Once they are merged, this script is to measure, side by side in one run,
against `ChatServer` on 127.0.0.1 with 100 ms latency and rpm = 1200, over 300 inputs:

1. `BatchRunner` (the code behind `flowrun batch`) with the flow declaring `rpm: 1200`:
   achieved rate / limit (goal >= 0.95), 429s seen by the server (goal 0), failed items (goal 0);
2. a naive `asyncio.gather` over `openai.AsyncOpenAI` with no limiter: its rate, 429s, failures;
3. a sequential loop with the sync SDK: its rate.

Print one table (rate, ratio to the limit, 429s, failures per side) and nothing else, like
`overhead.py`; put the figures in benchmarks/README.md.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.exit("benchmarks/throughput.py is not written yet: it waits for the server's rate limits and the "
             "client-side rate limiter (see its docstring)")
