"""Pacing by wall clock: `flowrun batch` at a server's limit, declared or only stated in its headers.

    python benchmarks/pacing.py [--inputs 300] [--repeat 1] [--concurrency 8]

The project's test server (`ChatServer`, on 127.0.0.1, started in this process) answers after
100 ms and behaves as OpenAI does: its `x-ratelimit-*` headers state the per-minute limits and count
them down over the minute (`Limits(headers="minute")`), while it ENFORCES them over 1-second windows
(1200 RPM: 20 requests in any second; a TPM limit likewise) with OpenAI's 429 past them. Each case
runs `flowrun batch` as a child process (the real command line: `python -m flowrunner._cli batch`)
over `--inputs` one-request runs of the same flow against a fresh server:

1. `rpm, undeclared`: the server limits requests to 1200 RPM; the batch declares no limit and must
   learn it from the headers. Goal: >= 90% of the limit, at most 1% of requests answered 429, 0 failed.
2. `tpm, undeclared`: the server limits tokens only, to 1200 times a request's cost (about 20
   requests a second); no declared limit. Same goal.
3. `rpm, declared`: as 1, with `--rate-limit rpm=1200`. Goal: >= 96%, no 429, 0 failed.

The rate is by WALL CLOCK from the first request's arrival at the server to the end of the last
answer it wrote (both on the server's clock, so the child's start-up, its `import openai` and its
writing of the results are outside, and everything from the first request on is inside: the
first request's round trip, the pacing, the tail). `limit %` is requests accepted over that span
as a share of what the limit allows in it: accepted / span / (limit per second). The older reading,
first to last ACCEPTED request (`throughput.py`'s), is printed beside it as `accepted %`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _flows import ASK  # benchmarks/_flows.py: the script's folder is on sys.path

RPM = 1200
LATENCY = 0.1
WINDOW = 1.0
UNDECLARED_GOAL, DECLARED_GOAL, MOST_429 = 0.90, 0.96, 0.01


def question(n: int) -> str:
    return f"Question number {n}: what is the capital of France?"


@dataclass(frozen=True)
class Case:
    name: str
    binding: str  # "rpm" or "tpm"
    declared: bool

    @property
    def goal(self) -> float:
        return DECLARED_GOAL if self.declared else UNDECLARED_GOAL


CASES = (Case("rpm, undeclared", "rpm", False), Case("tpm, undeclared", "tpm", False),
         Case("rpm, declared", "rpm", True))


@dataclass(frozen=True)
class Row:
    case: Case
    accepted: int
    rejected: int
    failed: int
    span: float  # first request's arrival to the last answer's end, seconds
    per_second: float  # what the limit allows per second
    accepted_ratio: float  # first to last accepted, as throughput.py reads it
    peak: int

    @property
    def ratio(self) -> float:
        return self.accepted / self.span / self.per_second if self.span > 0 else 0.0

    @property
    def met(self) -> bool:
        most_429 = 0 if self.case.declared else MOST_429 * (self.accepted + self.rejected)
        return self.ratio >= self.case.goal and self.rejected <= most_429 and self.failed == 0


class AnswerClock:
    """The end of every answer the test server writes (its handler patched for this benchmark only)."""

    def __init__(self) -> None:
        from flowrunner.testing import server

        self.ends: list[float] = []
        self._lock = threading.Lock()
        handler = server._Handler
        original = handler.do_POST

        def do_post(handler_self: Any) -> None:
            original(handler_self)
            with self._lock:
                self.ends.append(time.monotonic())

        setattr(handler, "do_POST", do_post)


def tokens_per_request() -> int:
    """What the server charges one of these requests (the rules' answer's usage), the largest of them."""
    from flowrunner.testing import _rules

    costs = [int(_rules.complete({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question(n)}]})
             ["usage"]["total_tokens"]) for n in (0, 10, 100, 1000)]
    return max(costs)


def run_case(case: Case, inputs: int, concurrency: int, folder: Path, clock: AnswerClock) -> Row:
    from flowrunner.testing import ChatServer, Limits

    if case.binding == "rpm":
        limits, per_second = Limits(rpm=RPM, window=WINDOW, headers="minute"), RPM / 60
    else:
        cost = tokens_per_request()
        limits = Limits(tpm=RPM * cost, window=WINDOW, headers="minute")
        per_second = RPM * cost / 60 / cost  # in requests: each costs at most `cost`
    out = folder / "out.jsonl"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with ChatServer(limits=limits, latency=LATENCY, validate_responses=False) as server:
        command = [sys.executable, "-m", "flowrunner._cli", "batch", str(folder / "ask.yaml"),
                   "--inputs", str(folder / "in.jsonl"), "--out", str(out), "--base-url", server.base_url,
                   "--concurrency", str(concurrency), "--progress-interval", "3600"]
        if case.declared:
            command += ["--rate-limit", f"rpm={RPM}"]
        clock.ends.clear()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        stats = server.stats
        arrivals = [r.arrived for r in server.requests if r.arrived is not None]
        ends = list(clock.ends)
    results = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    failed = sum(r["status"] != "succeeded" for r in results) + (inputs - len(results))
    if done.returncode not in (0, 1):
        print(f"{case.name}: flowrun batch exited {done.returncode}: {done.stderr[-2000:]}", file=sys.stderr)
    if failed:
        kinds = sorted({r["error"]["type"] for r in results if r["status"] != "succeeded"})
        print(f"{case.name}: {failed} failed ({', '.join(kinds) or 'no result line'})", file=sys.stderr)
    span = max(ends) - min(arrivals) if arrivals and ends else 0.0
    at = stats.accepted_at
    accepted_ratio = (len(at) - 1) / (at[-1] - at[0]) / per_second if len(at) > 1 and at[-1] > at[0] else 0.0
    return Row(case, stats.accepted, stats.rejected, failed, span, per_second, accepted_ratio, stats.most_in(WINDOW))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every case (default: 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="flowrun batch workers (default: 8)")
    parser.add_argument("--cases", nargs="+", choices=[c.binding + ("-declared" if c.declared else "") for c in CASES],
                        help="only these cases (default: all)")
    args = parser.parse_args()

    import openai

    cases = [c for c in CASES if not args.cases or c.binding + ("-declared" if c.declared else "") in args.cases]
    clock = AnswerClock()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "ask.yaml").write_text(ASK)
        (folder / "in.jsonl").write_text("".join(json.dumps({"question": question(n)}) + "\n"
                                                 for n in range(args.inputs)))
        for _ in range(args.repeat):
            for case in cases:
                rows.append(run_case(case, args.inputs, args.concurrency, folder, clock))

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}, openai {openai.__version__}; {args.inputs} inputs, {args.concurrency} "
          f"workers, server latency {LATENCY * 1000:.0f} ms, limits enforced over {WINDOW:g} s windows, headers "
          f"per minute; load average at the end {load}")
    print(f"{'case':18} {'limit/s':>8} {'ok':>4} {'failed':>6} {'429s':>5} {'span s':>7} {'limit %':>8} "
          f"{'accepted %':>10} {'peak':>5}  goal")
    for r in rows:
        most = "0" if r.case.declared else f"<= {MOST_429:.0%}"
        print(f"{r.case.name:18} {r.per_second:8.2f} {r.accepted:4} {r.failed:6} {r.rejected:5} {r.span:7.2f} "
              f"{r.ratio:8.1%} {r.accepted_ratio:10.1%} {r.peak:5}  >= {r.case.goal:.0%}, {most} 429s, 0 failed: "
              f"{'met' if r.met else 'missed'}")


if __name__ == "__main__":
    main()
