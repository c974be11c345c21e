"""`flowrun view`'s library side: the history database opened read-only behind a `ViewServer`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

from .._exceptions import ConfigError
from ._server import RunStore, ViewServer


def history_server(db: Path | None = None, *, port: int = 0) -> ViewServer:
    """A server (not yet serving) over the run history at `db` (default: where `flowrun` writes it)."""
    from ..history import History, default_path, diff_runs

    path = Path(db) if db is not None else default_path()
    if not path.is_file():
        raise ConfigError(f"no run history at {path}\n  hint: run a flow first (`flowrun flows/weather.yaml` "
                          "logs it), or point --db at a history database")
    history = History(path, readonly=True)  # one connection, shared by the server's threads under its lock
    history.runs(limit=1)  # an unreadable database is said now, not on the first page
    return ViewServer(lambda: history, port=port, diff=diff_runs, source=str(path))


def can_open_browser(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser window can appear: not in CI, and on a desktop (macOS, Windows, or X/Wayland)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if environ.get("CI"):
        return False
    return platform in ("darwin", "win32") or bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
