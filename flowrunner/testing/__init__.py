"""Testing helpers: an OpenAI-compatible Chat Completions server with deterministic answers.

    from flowrunner.testing import ChatServer, Reply

The names are loaded on first use rather than imported here, so that
`python -m flowrunner.testing.server` does not find its own module already imported (runpy warns
about that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowrunner.testing.server import ChatServer, Reply

__all__ = ["ChatServer", "Reply"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flowrunner.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
