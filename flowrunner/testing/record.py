"""Re-record the cassettes of a folder of flows by running each flow for real, with recording on.

    python -m flowrunner.testing.record                      # against the project's test server
    python -m flowrunner.testing.record --base-url URL       # against any OpenAI-compatible server
    OPENAI_API_KEY=sk-... python -m flowrunner.testing.record --base-url https://api.openai.com/v1

Each `FLOW.yaml` is recorded with `flowrun FLOW --record-mode all` into `cassettes/FLOW.yaml`; a flow
with a `FLOW.session.txt` beside it is a chat, recorded with `flowrun chat FLOW` reading those lines.
A flow with a `data/FLOW.jsonl` also has its batch recorded, with `flowrun batch`, into
`cassettes/FLOW.batch.yaml`. Nothing is written by hand: a cassette is what the server answered.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


@contextlib.contextmanager
def _server(base_url: str | None) -> Iterator[str]:
    if base_url:
        yield base_url
        return
    from .server import ChatServer

    with ChatServer() as server:
        yield server.base_url


def record(folder: Path, base_url: str | None) -> int:
    """Record every flow in `folder`; the number of flows that failed."""
    failures = 0
    flowrun = [sys.executable, "-m", "flowrunner._cli"]
    with _server(base_url) as url:
        print(f"recording against {url}", file=sys.stderr)
        for flow in sorted(folder.glob("*.yaml")):
            session = flow.with_suffix(".session.txt")
            command = flowrun + (["chat", str(flow)] if session.is_file() else [str(flow)])
            stdin = session.read_text(encoding="utf-8") if session.is_file() else None
            failures += _run(str(flow), command + ["--base-url", url, "--record-mode", "all"], stdin)
            inputs = folder / "data" / f"{flow.stem}.jsonl"
            if inputs.is_file():
                with tempfile.TemporaryDirectory() as scratch:  # one at a time: the same order every time
                    failures += _run(f"{flow} (batch of {inputs})", flowrun + [
                        "batch", str(flow), "--inputs", str(inputs), "--out", str(Path(scratch) / "results.jsonl"),
                        "--concurrency", "1", "--base-url", url, "--record-mode", "all",
                        "--cassette", str(folder / "cassettes" / f"{flow.stem}.batch.yaml")], None)
    return failures


def _run(label: str, command: list[str], stdin: str | None) -> int:
    """Run one recording command; 1 if it failed (and say why), else 0."""
    done = subprocess.run(command, input=stdin, text=True, capture_output=True)
    print(f"{label}: {'ok' if done.returncode == 0 else f'FAILED (exit {done.returncode})'}", file=sys.stderr)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowrunner.testing.record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="flows", type=Path, help="folder of flows (default: flows)")
    parser.add_argument("--base-url", help="server to record against (default: start the test server)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir() or not any(args.folder.glob("*.yaml")):
        parser.error(f"{args.folder} is not a folder of flows (no *.yaml in it)")
    return 1 if record(args.folder, args.base_url) else 0


if __name__ == "__main__":
    sys.exit(main())
