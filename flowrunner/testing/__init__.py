"""Testing helpers: an OpenAI-compatible Chat Completions server with deterministic answers, and
OpenAI's Files and Batch API on a clock tests control (`BatchSettings`, `server.batches`).

    from flowrunner.testing import BatchSettings, ChatServer, Limits, Reply, faults

The names are loaded on first use rather than imported here, so that
`python -m flowrunner.testing.server` does not find its own module already imported (runpy warns
about that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowrunner.testing import faults
    from flowrunner.testing._batches import BatchSettings, BatchStats
    from flowrunner.testing._limits import Limits, Stats
    from flowrunner.testing._reply import Reply, error_reply
    from flowrunner.testing.server import ChatServer

__all__ = ["BatchSettings", "BatchStats", "ChatServer", "Limits", "Reply", "Stats", "error_reply", "faults"]

_HOMES = {"BatchSettings": "_batches", "BatchStats": "_batches", "ChatServer": "server", "Limits": "_limits", "Stats": "_limits", "Reply": "_reply",
          "error_reply": "_reply"}


def __getattr__(name: str) -> Any:
    if name == "faults":
        import importlib

        return importlib.import_module("flowrunner.testing.faults")
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"flowrunner.testing.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
