"""`flowrun view`: the run history as web pages (runs list, a run's timeline, two runs side by side).

One seam: `ViewServer(open_store, port=..., diff=...)`; the CLI hands it the history opened read-only.
Only the standard library's `http.server` and Jinja (already a dependency); the CSS and JS are package
files, so the pages work offline. Imported only by `flowrun view`.
"""

from __future__ import annotations

from ._server import RunStore, ViewServer
from ._timeline import Timeline, build as build_timeline

__all__ = ["RunStore", "ViewServer", "Timeline", "build_timeline"]
