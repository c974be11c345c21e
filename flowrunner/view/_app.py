"""`flowrun view`'s library side: the history database opened read-only behind a `ViewServer`."""

from __future__ import annotations

import os
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, Mapping

from .._exceptions import ConfigError
from ._server import RunStore, ViewServer


def history_server(db: Path | None = None, *, port: int = 0) -> ViewServer:
    """A server (not yet serving) over the run history at `db` (default: where `flowrun` writes it)."""
    history: Any = import_module("flowrunner.history") if db is None else None
    path = Path(db) if db is not None else history.default_path()
    if not path.is_file():
        raise ConfigError(f"no run history at {path}\n  hint: run a flow first (`flowrun flows/weather.yaml` "
                          "logs it), or point --db at a history database")
    history = history or import_module("flowrunner.history")

    def open_store() -> RunStore:
        store: RunStore = history.History(path, readonly=True)
        return store

    open_store()  # an unreadable database is said now, not on the first page
    return ViewServer(open_store, port=port, diff=_diff_function(), source=str(path))


def _diff_function() -> Any:
    return import_module("flowrunner.history._diff").diff_runs


def can_open_browser(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser window can appear: not in CI, and on a desktop (macOS, Windows, or X/Wayland)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if environ.get("CI"):
        return False
    return platform in ("darwin", "win32") or bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
