"""Memory of long batches: peak RSS of `flowrun batch` over 10,000 and 100,000 input lines.

    python benchmarks/memory.py [--lines 10000 100000] [--concurrency 8]

For each size, writes that many distinct input lines to a temporary folder (deleted at the end)
and runs `flowrun batch` on a one-step flow against the project's test server on 127.0.0.1
(started in this process; its own memory is not measured), as a child process whose peak
resident memory comes from `os.wait4`. Flat memory means the peak barely moves between sizes:
inputs are read lazily and results written as runs end. What does grow is one key per input line
(to number repeated lines), reported below as bytes per line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _flows import ASK  # benchmarks/_flows.py: the script's folder is on sys.path



def batch(folder: Path, lines: int, base_url: str, concurrency: int) -> tuple[float, int, str]:
    """Seconds, peak RSS in KiB and the summary's first line of one `flowrun batch` child."""
    inputs, out = folder / f"in{lines}.jsonl", folder / f"out{lines}.jsonl"
    with inputs.open("w") as handle:
        for n in range(lines):
            handle.write(json.dumps({"question": f"Question number {n}: what is the capital of France?"}) + "\n")
    command = [sys.executable, "-m", "flowrunner._cli", "batch", str(folder / "ask.yaml"), "--inputs", str(inputs),
               "--out", str(out), "--base-url", base_url, "--concurrency", str(concurrency),
               "--progress-interval", "3600"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    summary = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"flowrun batch failed (exit {child.returncode}):\n{summary}")
    with out.open("rb") as handle:
        assert sum(1 for _ in handle) == lines
    out.unlink()
    inputs.unlink()
    return seconds, usage.ru_maxrss, summary.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from flowrunner.testing import ChatServer

    rows = []
    with tempfile.TemporaryDirectory() as name, ChatServer(validate_responses=False) as server:
        folder = Path(name)
        (folder / "ask.yaml").write_text(ASK)
        for lines in args.lines:
            rows.append((lines, *batch(folder, lines, server.base_url, args.concurrency)))

    print(f"python {sys.version.split()[0]}, concurrency {args.concurrency}, test server on 127.0.0.1")
    print(f"{'lines':>8} {'seconds':>8} {'runs/s':>7} {'peak RSS':>10}  summary")
    for lines, seconds, peak, summary in rows:
        print(f"{lines:8} {seconds:8.1f} {lines / seconds:7.0f} {peak / 1024:7.1f} MiB  {summary}")
    if len(rows) >= 2:
        (small, _, low, _), (large, _, high, _) = rows[0], rows[-1]
        print(f"peak at {large:,} lines / peak at {small:,} lines: {high / low:.3f} "
              f"({(high - low) * 1024 / (large - small):.0f} bytes per extra line)")


if __name__ == "__main__":
    main()
