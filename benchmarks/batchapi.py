"""The client's own cost of `flowrun batch --via batch-api`, next to a live `flowrun batch` on the same inputs.

    python benchmarks/batchapi.py [--lines 10000] [--concurrency 16] [--window 10000]

Writes that many distinct one-step inputs (the `ask` flow of `_flows.py`) to a temporary folder
(deleted at the end) and runs them twice as child processes against the project's test server on
127.0.0.1, started in this process (its own work is not measured): once through the server's Batch
API, on a clock 10,000 times real time (a simulated hour in 0.36 s, so the wait is the client's and
the server's work, not the simulated queue), and once live. For each it reports the child's CPU
seconds (user + system) and peak resident memory from `os.wait4`, the wall clock, and for the
Batch API the bytes uploaded (from the job's summary), all also per 1,000 inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _flows import ASK  # benchmarks/_flows.py: the script's folder is on sys.path

from flowrunner.testing import BatchSettings, ChatServer


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS in KiB and stdout of one child."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command[3:6])}... failed (exit {code}):\n{out}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="the live batch's concurrency")
    parser.add_argument("--window", type=int, default=10_000, help="the Batch API job's runs held at once")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
          f"(load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    with tempfile.TemporaryDirectory() as tmp, ChatServer(batch=BatchSettings(speed=10_000),
                                                          validate_responses=False) as server:
        folder = Path(tmp)
        (folder / "ask.yaml").write_text(ASK)
        inputs = folder / "in.jsonl"
        with inputs.open("w") as handle:
            for n in range(args.lines):
                handle.write(json.dumps({"question": f"Question number {n}: what is the capital of France?"}) + "\n")
        env = {**os.environ, "FLOWRUN_BATCH_POLL": "0.05,0.5"}
        base = [sys.executable, "-m", "flowrunner._cli", "batch", str(folder / "ask.yaml"), "--inputs", str(inputs),
                "--base-url", server.base_url, "--progress-interval", "3600"]
        rows = []
        for name, extra in (("batch-api", ["--via", "batch-api", "--window", str(args.window)]),
                            ("live", ["--concurrency", str(args.concurrency)])):
            out = folder / f"{name}.jsonl"
            wall, cpu, rss, text = run([*base, "--out", str(out), *extra], env)
            with out.open("rb") as handle:
                assert sum(1 for _ in handle) == args.lines, f"{name}: not every input has a result"
            uploaded = re.search(r"([\d,]+) bytes uploaded", text)
            rows.append((name, wall, cpu, rss, int(uploaded.group(1).replace(",", "")) if uploaded else None))
        per = 1000 / args.lines
        print(f"{args.lines:,} one-step inputs; per 1,000 inputs in brackets")
        print(f"{'':10} {'wall s':>16} {'CPU s':>16} {'peak RSS MiB':>13} {'uploaded KiB':>20}")
        for name, wall, cpu, rss, uploaded in rows:
            up = f"{uploaded / 1024:,.0f} ({uploaded * per / 1024:,.0f})" if uploaded is not None else "-"
            print(f"{name:10} {wall:7.1f} ({wall * per:5.2f}) {cpu:7.1f} ({cpu * per:5.2f}) {rss / 1024:13.0f} "
                  f"{up:>20}")


if __name__ == "__main__":
    main()
