"""Start-up time of `flowrun --help` and `flowrun validate flows/weather.yaml`, each a fresh process.

    python benchmarks/startup.py [--runs 10]

Prints the median and the slowest of N runs of each command, and which heavy modules each imported
(neither should import openai or vcrpy: `import openai` alone costs most of a second).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"flowrun --help": ["--help"], "flowrun validate flows/weather.yaml": ["validate", "flows/weather.yaml"]}
PROBE = ("import sys, runpy\nsys.argv = ['flowrun'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('flowrunner._cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print('HEAVY', sorted(m for m in ('openai', 'vcr', 'httpx2') if m in sys.modules), file=sys.stderr)")


def time_command(args: list[str], runs: int) -> tuple[list[float], str]:
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, capture_output=True, check=False)
        durations.append(time.perf_counter() - start)
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True)
    heavy = next((line for line in probe.stderr.splitlines() if line.startswith("HEAVY")), "HEAVY ?")
    return durations, heavy.removeprefix("HEAVY ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print(f"python {sys.version.split()[0]}, {runs} runs each, goal < 0.300 s")
    for name, args in COMMANDS.items():
        durations, heavy = time_command(args, runs)
        print(f"{name:40} median {statistics.median(durations):.3f} s  max {max(durations):.3f} s  "
              f"heavy modules imported: {heavy}")


if __name__ == "__main__":
    main()
