"""`approve: ask`: the terminal's question before each such call (y / n / always), for `run` and `chat`."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

from .._json import dumps
from .._secrets import redact


def terminal_approver() -> Callable[[Any, dict[str, Any]], bool] | None:
    """The engine's `approve` callback when stdin and stderr are a terminal; None otherwise (calls that need
    approval are then refused, and the model told)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    lock = threading.Lock()  # calls run in parallel: one question at a time
    always: set[str] = set()

    def approve(spec: Any, arguments: dict[str, Any]) -> bool:
        with lock:
            if spec.name in always:
                return True
            where = f" (mcp server {spec.server})" if spec.server else ""
            shown = redact(dumps(arguments))
            shown = shown if len(shown) <= 300 else shown[:297] + "..."
            while True:
                print(f"run {spec.name}{where} with {shown}? [y]es, [n]o, [a]lways: ", end="", file=sys.stderr,
                      flush=True)
                line = sys.stdin.readline()
                answer = line.strip().lower()
                if not line or answer in ("n", "no"):
                    return False
                if answer in ("y", "yes"):
                    return True
                if answer in ("a", "always"):
                    always.add(spec.name)
                    return True

    return approve
