"""Throughput at a rate limit: `flowrun batch` against a naive asyncio.gather and a sequential loop.

    python benchmarks/throughput.py [--inputs 300] [--windows 1 60] [--concurrency 8]

The project's test server (`ChatServer`, on 127.0.0.1, started in this process) answers after
100 ms and enforces rpm = 1200 over a sliding window: in any `window` seconds it accepts at most
1200 * window / 60 requests and answers the rest with OpenAI's 429. OpenAI states limits per
minute but enforces them over short periods, so the 1 s window (20 requests in any second) is the
reading that matters; the 60 s window (1200 in any minute) is the literal one. For each window,
each side gets a fresh server and sends the same `--inputs` one-request chats:

1. `BatchRunner` (the code behind `flowrun batch`), `--concurrency` workers,
   the limit given as with `--rate-limit rpm=1200` (`Engine(rate_limit=...)`): goal rate >= 95% of the limit, no 429, no failed item;
2. `asyncio.gather` over `openai.AsyncOpenAI(max_retries=0)`, every input at once, no limiter;
3. the same with the SDK's default `max_retries=2` (it sleeps for the 429's `retry-after-ms`);
4. what a careful user writes: `asyncio.gather` over `openai.AsyncOpenAI` with the SDK's default
   retries (`max_retries=2`), each request first taking a token from a token bucket at the declared
   limit (20 tokens a second, at most 20 saved up, as aiolimiter's `AsyncLimiter(20, 1)`);
5. a loop over `openai.OpenAI(max_retries=0)`, one request after the other (1 s window only: at
   one request per 100 ms it is under the limit in either window).

429s are counted by the server (`server.stats`), failed items by the client. `openai` and the SDK
clients are made before a side's clock starts. The rate is taken from the server's acceptance
times: (accepted - 1) / (last acceptance - first acceptance), so it covers the steady part from
the first request to the last and leaves out start-up (threads, client creation) and the final
100 ms answer. `wall` is from the side's start to its last item's end; `peak 1s` is the most
requests the server accepted in any 1-second window (the limit allows 20).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from _flows import ASK  # benchmarks/_flows.py: the script's folder is on sys.path

RPM = 1200
LATENCY = 0.1
GOAL = 0.95


def question(n: int) -> str:
    return f"Question number {n}: what is the capital of France?"


@dataclass(frozen=True)
class Row:
    window: float
    side: str
    succeeded: int
    failed: dict[str, int]  # failed items by error class
    rejected: int  # 429s the server sent
    accepted: int
    wall: float
    rate: float  # accepted per second, first to last acceptance
    peak: int  # most accepted in any 1 s

    @property
    def ratio(self) -> float:
        return self.rate / (RPM / 60)


Outcome = tuple[int, dict[str, int]]  # items succeeded; items failed by error class


def measure(window: float, side: str, body: Callable[[str], Outcome]) -> Row:
    """Run one side against a fresh server; `body(base_url)` returns its Outcome."""
    from flowrunner.testing import ChatServer, Limits

    with ChatServer(limits=Limits(rpm=RPM, window=window), latency=LATENCY, validate_responses=False) as server:
        start = time.monotonic()
        succeeded, failed = body(server.base_url)
        wall = time.monotonic() - start
        stats = server.stats
    at = stats.accepted_at
    rate = (len(at) - 1) / (at[-1] - at[0]) if len(at) > 1 and at[-1] > at[0] else 0.0
    return Row(window, side, succeeded, failed, stats.rejected, stats.accepted, wall, rate, stats.most_in(1.0))


def batch_side(inputs: int, concurrency: int, folder: Path) -> Callable[[str], Outcome]:
    from flowrunner import Engine, OpenAITransport, load_flow
    from flowrunner._batch import BatchRunner
    from flowrunner._ratelimit import RateLimit, RateLimiter

    (folder / "ask.yaml").write_text(ASK)
    flow = load_flow(folder / "ask.yaml")
    lines = folder / "in.jsonl"
    lines.write_text("".join(json.dumps({"question": question(n)}) + "\n" for n in range(inputs)))

    def body(base_url: str) -> Outcome:
        out = folder / "out.jsonl"
        out.unlink(missing_ok=True)
        with OpenAITransport(base_url=base_url) as transport:
            transport.warm()  # the SDK client exists before the clock starts, as for the other sides
            engine = Engine(transport, limiter=RateLimiter(), rate_limit=RateLimit(rpm=RPM))  # --rate-limit
            summary = BatchRunner(engine, flow, lines, out, concurrency=concurrency, tick=3600).run()
        with out.open() as handle:
            results = [json.loads(line) for line in handle]
        assert len(results) == inputs, (len(results), inputs)
        failed = Counter(r["error"]["type"] for r in results if r["status"] != "succeeded")
        assert summary.progress.failed == sum(failed.values())
        return summary.progress.succeeded, dict(failed)

    return body


def gather_side(inputs: int, max_retries: int) -> Callable[[str], Outcome]:
    import openai

    def body(base_url: str) -> Outcome:
        async def main() -> list[Any]:
            client = openai.AsyncOpenAI(base_url=base_url, api_key="no-key", max_retries=max_retries)
            async with client:
                return await asyncio.gather(*(client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question(n)}])
                    for n in range(inputs)), return_exceptions=True)

        results = asyncio.run(main())
        failed = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
        return inputs - sum(failed.values()), dict(failed)

    return body


class TokenBucket:
    """The limiter a careful user writes (or takes from a library such as aiolimiter's `AsyncLimiter(20, 1)`):
    `rate` tokens a second, at most `capacity` saved up; each request takes one, waiting its turn in order."""

    def __init__(self, rate: float, capacity: float):
        self.rate, self.capacity = rate, capacity
        self.tokens, self.updated = capacity, time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def bucket_side(inputs: int) -> Callable[[str], Outcome]:
    """asyncio over `openai.AsyncOpenAI` with the SDK's default retries, every input started at once but
    each request taking a token from a bucket at the declared limit (20 a second, one second's worth saved)."""
    import openai

    def body(base_url: str) -> Outcome:
        async def main() -> list[Any]:
            bucket = TokenBucket(RPM / 60, RPM / 60)
            client = openai.AsyncOpenAI(base_url=base_url, api_key="no-key")  # max_retries: the SDK's default

            async def ask(n: int) -> Any:
                await bucket.take()
                return await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question(n)}])

            async with client:
                return await asyncio.gather(*(ask(n) for n in range(inputs)), return_exceptions=True)

        results = asyncio.run(main())
        failed = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
        return inputs - sum(failed.values()), dict(failed)

    return body


def sequential_side(inputs: int) -> Callable[[str], Outcome]:
    import openai

    def body(base_url: str) -> Outcome:
        succeeded, failed = 0, Counter[str]()
        with openai.OpenAI(base_url=base_url, api_key="no-key", max_retries=0) as client:
            for n in range(inputs):
                try:
                    client.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": question(n)}])
                    succeeded += 1
                except openai.APIError as exc:
                    failed[type(exc).__name__] += 1
        return succeeded, dict(failed)

    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument("--windows", type=float, nargs="+", default=[1.0, 60.0],
                        help="the server's sliding windows in seconds (default: 1 60)")
    parser.add_argument("--concurrency", type=int, default=8, help="flowrun batch workers (default: 8)")
    args = parser.parse_args()

    import openai

    rows: list[Row] = []
    batch_name = f"flowrun batch, {args.concurrency} workers"
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for window in args.windows:
            rows.append(measure(window, batch_name, batch_side(args.inputs, args.concurrency, folder)))
            rows.append(measure(window, "gather, max_retries=0", gather_side(args.inputs, 0)))
            rows.append(measure(window, "gather, max_retries=2", gather_side(args.inputs, 2)))
            rows.append(measure(window, "token bucket + SDK retries", bucket_side(args.inputs)))
            if window == args.windows[0]:
                rows.append(measure(window, "sequential loop", sequential_side(args.inputs)))

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}; {args.inputs} inputs, server latency "
          f"{LATENCY * 1000:.0f} ms, limit rpm {RPM} ({RPM / 60:.0f}/s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'window':>6}  {'side':28} {'ok':>4} {'failed':>6} {'429s':>5} {'wall s':>7} {'ok/s':>6} "
          f"{'rate/s':>8} {'rate/limit':>10} {'peak 1s':>7}")
    for r in rows:
        print(f"{r.window:5g}s  {r.side:28} {r.succeeded:4} {sum(r.failed.values()):6} {r.rejected:5} {r.wall:7.2f} "
              f"{r.succeeded / r.wall:6.2f} {r.rate:8.2f} {r.ratio:10.3f} {r.peak:7}")
    kinds = sorted({f"{r.window:g}s {r.side}: " + ", ".join(f"{n} {k}" for k, n in sorted(r.failed.items()))
                    for r in rows if r.failed})
    if kinds:
        print("failed items by error: " + "; ".join(kinds))
    for window in args.windows:
        ours, *others = [r for r in rows if r.window == window]
        met = ours.ratio >= GOAL and ours.rejected == 0 and not ours.failed
        print(f"window {window:g}s: flowrun batch rate / limit {ours.ratio:.3f}, {ours.rejected} 429s, "
              f"{sum(ours.failed.values())} failed (goal >= {GOAL}, 0, 0: {'met' if met else 'missed'})")
        for r in others:
            print(f"  ok/s, flowrun batch / {r.side}: "
                  + (f"{(ours.succeeded / ours.wall) / (r.succeeded / r.wall):.2f}" if r.succeeded else "-"))

if __name__ == "__main__":
    main()
