"""The run history: `flowrun run` and `flowrun chat` write each run here, `flowrun runs` reads it.

Imported only when a run is logged or the history is read: `flowrun --help` and `flowrun validate`
never load sqlite3. The web page (`flowrun view`) reads it through the same names.
"""

from __future__ import annotations

from ._diff import RoundDiff, RunDiff, StepDiff, ValueChange, diff_runs
from ._store import SCHEMA_VERSION, History, HistoryError, StoredRun, default_path, flow_hash, migrate, new_id

__all__ = ["SCHEMA_VERSION", "History", "HistoryError", "RoundDiff", "RunDiff", "StepDiff", "StoredRun", "ValueChange",
           "default_path", "diff_runs", "flow_hash", "migrate", "new_id"]
