"""Re-record the cassettes of a folder of flows by running each flow for real, with recording on.

    python -m flowrunner.testing.record                      # against the project's test server
    python -m flowrunner.testing.record --base-url URL       # against any OpenAI-compatible server
    OPENAI_API_KEY=sk-... python -m flowrunner.testing.record --base-url https://api.openai.com/v1

Each `FLOW.yaml` is recorded with `flowrun FLOW --record-mode all` into `cassettes/FLOW.yaml`; a flow
with a `FLOW.session.txt` beside it is a chat, recorded with `flowrun chat FLOW` reading those lines.
Nothing is written by hand: a cassette is what the server answered.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
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
    with _server(base_url) as url:
        print(f"recording against {url}", file=sys.stderr)
        for flow in sorted(folder.glob("*.yaml")):
            session = flow.with_suffix(".session.txt")
            command = [sys.executable, "-m", "flowrunner._cli"]
            command += ["chat", str(flow)] if session.is_file() else [str(flow)]
            command += ["--base-url", url, "--record-mode", "all"]
            stdin = session.read_text(encoding="utf-8") if session.is_file() else None
            done = subprocess.run(command, input=stdin, text=True, capture_output=True)
            status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
            print(f"{flow}: {status}", file=sys.stderr)
            if done.returncode != 0:
                failures += 1
                print(done.stderr, file=sys.stderr)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowrunner.testing.record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="flows", type=Path, help="folder of flows (default: flows)")
    parser.add_argument("--base-url", help="server to record against (default: start the test server)")
    args = parser.parse_args(argv)
    return 1 if record(args.folder, args.base_url) else 0


if __name__ == "__main__":
    sys.exit(main())
