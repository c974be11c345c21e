"""The run history: every run's record in one SQLite file, with the columns a query needs beside it.

One table, `runs`: the whole run record as JSON (`record`, already redacted by the engine) plus query
columns (id, started, duration, flow, file, flow_hash, status, models, tokens, cost, error_type,
command). The file is opened in WAL mode with a busy timeout, so many writers (a batch's workers,
several `flowrun` processes) and readers (`flowrun runs`, the web page, Datasette) share it.

Writing never raises for a database problem: a run must succeed and exit as it would whether or
not its history could be kept. `History.write` returns None and keeps the reason in `last_error`
for the caller to warn with. Reading (`runs`, `get`) raises HistoryError, which the CLI shows.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` takes a version-n database to
n+1, each in one transaction, so an older file is brought up to date the first time it is written
or read by a newer flowrunner.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import UsageError

if TYPE_CHECKING:
    from .._record import RunRecord

SCHEMA_VERSION = 2
BUSY_TIMEOUT = 5.0
"""Seconds a writer waits for another to finish (each write takes milliseconds) before giving up."""
MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Characters of record JSON kept: a larger record (a run of huge answers) is stored as a note saying so."""
_ID_TIME_HEX = 11  # milliseconds since 1970 fit 11 hex digits until the year 2527
_ID_RANDOM_HEX = 9
MIN_PREFIX = 4
SHORT_ID = 12
"""How many characters of an id `flowrun runs` shows: the time to the millisecond, and one random digit."""


class HistoryError(UsageError):
    """The history cannot answer: no such run, an ambiguous id prefix, an unreadable database."""


@dataclass(frozen=True)
class StoredRun:
    """One run as the history keeps it: the query columns, and the whole record as a dict."""

    id: str
    started: float | None
    duration: float | None
    flow: str
    file: str
    flow_hash: str | None
    status: str
    models: list[str]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    error_type: str | None
    command: str
    record: dict[str, Any] = field(repr=False)

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]


def default_path() -> Path:
    """$FLOWRUN_HOME/history.db, else history.db in flowrunner's folder of the per-user data folder."""
    home = os.environ.get("FLOWRUN_HOME")
    if home:
        return Path(home).expanduser() / "history.db"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "flowrunner" / "history.db"


def new_id(now: float | None = None) -> str:
    """A run id that sorts by time: milliseconds since 1970 in hex, then random hex digits."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:0{_ID_TIME_HEX}x}{secrets.token_hex(5)[:_ID_RANDOM_HEX]}"


def flow_hash(text: str | None) -> str | None:
    """The sha256 of a flow file's text: two runs of the same hash ran the same flow."""
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    started REAL,
    duration REAL,
    flow TEXT NOT NULL,
    file TEXT NOT NULL,
    flow_hash TEXT,
    status TEXT NOT NULL,
    models TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    command TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started);
CREATE INDEX runs_flow ON runs (flow, started);
"""
# Version 2 adds what a run cost (USD), taken from the records that already say it.
_V2 = """
ALTER TABLE runs ADD COLUMN cost REAL;
UPDATE runs SET cost = json_extract(record, '$.cost') WHERE json_valid(record);
CREATE INDEX runs_status ON runs (status, started);
"""
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2}
"""`MIGRATIONS[n]`: the SQL that takes a version-n database to version n+1."""

_COLUMNS = ("id", "started", "duration", "flow", "file", "flow_hash", "status", "models", "prompt_tokens",
            "completion_tokens", "total_tokens", "cost", "error_type", "command", "record")


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the database to SCHEMA_VERSION, one migration per transaction; HistoryError if it is newer."""
    while True:
        version = _user_version(connection)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise HistoryError(f"the history database is of version {version}, newer than this flowrunner "
                               f"knows (up to {SCHEMA_VERSION})\n  hint: upgrade flowrunner")
        connection.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait, then see it done
        try:
            if _user_version(connection) == version:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


def _user_version(connection: sqlite3.Connection) -> int:
    value = connection.execute("PRAGMA user_version").fetchone()[0]
    return int(value)


class History:
    """The run history in one SQLite file; safe to share between threads, and between processes."""

    def __init__(self, path: Path | None = None, *, readonly: bool = False,
                 timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        self.timeout = timeout
        self.last_error: str | None = None
        """Why the latest `write` stored nothing (for the caller's warning)."""
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        if self.readonly:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            connection = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                         check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                         check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not self.readonly:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")  # safe in WAL mode; a commit is not an fsync
                migrate(connection)
            elif _user_version(connection) > SCHEMA_VERSION:
                migrate(connection)  # says the database is too new
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def write(self, record: RunRecord, *, flow_text: str | None = None, command: str = "run") -> str | None:
        """Store a run's record; its new id, or None (and `last_error` says why) if the database failed."""
        from .._json import dumps
        from .._secrets import redact_data

        data = redact_data(record.to_dict())  # the engine's records are redacted already; a library user's too
        started, duration = record.started, record.duration
        cost = getattr(record, "cost", None)  # until the record says what a run cost
        usage = data.get("usage") or {}
        models = sorted({step.model for step in record.steps if step.model})
        error_type = (record.error or {}).get("type")
        if started is None:  # a record made without the engine: it ended now, and took `duration` if known
            started = time.time() - (_number(duration) or 0.0)
        run_id = new_id(started)
        row = (run_id, _number(started), _number(duration), record.flow, _absolute(record.file), flow_hash(flow_text),
               record.status, dumps(models), _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")),
               _int(usage.get("total_tokens")), _number(cost), error_type, command, _record_json(dumps(data)))
        try:
            with self._lock:
                connection = self._connect()
                connection.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES "
                                   f"({', '.join('?' * len(_COLUMNS))})", row)
        except (sqlite3.Error, OSError, HistoryError, OverflowError, ValueError) as exc:
            self.last_error = _reason(exc)  # the run goes on without its history; the caller warns
            return None
        self.last_error = None
        return run_id

    def runs(self, *, flow: str | None = None, status: str | None = None, since: float | None = None,
             limit: int = 20, search: str | None = None) -> list[StoredRun]:
        """The latest runs, newest first: of one flow (name, or file as stored), of one status, since a time,
        whose record contains `search`."""
        where: list[str] = []
        params: list[Any] = []
        if flow is not None:
            where.append("(flow = ? OR file = ?)")
            params += [flow, flow]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        if search:
            where.append("instr(record, ?) > 0")
            params.append(search)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"  # newest written first, also within one millisecond
        params.append(max(int(limit), 0))
        return [_stored(row) for row in self._query(sql, params)]

    def get(self, id_or_prefix: str) -> StoredRun:
        """The run of this id, or of the one id starting with this prefix (at least 4 characters)."""
        prefix = id_or_prefix.strip().lower()
        if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise HistoryError(f"{id_or_prefix!r} is not a run id: expected at least {MIN_PREFIX} hex digits of "
                               "one, as `flowrun runs` lists them")
        select = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        rows = self._query(f"{select} WHERE id = ?", [prefix])
        if rows:
            return _stored(rows[0])
        rows = self._query(f"{select} WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT 11", [prefix, prefix + "g"])
        if not rows:
            raise HistoryError(f"no run {id_or_prefix!r} in {self.path}\n  hint: `flowrun runs` lists the latest")
        if len(rows) > 1:
            shown = "\n".join(f"  {row[0]}  {row[3]}  {row[6]}" for row in rows[:10])
            more = "\n  ..." if len(rows) > 10 else ""
            raise HistoryError(f"run id {id_or_prefix!r} is ambiguous; it starts:\n{shown}{more}\n"
                               "  hint: give more of the id")
        return _stored(rows[0])

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self.readonly and not self.path.exists():
            return []  # nothing run yet
        try:
            with self._lock:
                return list(self._connect().execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the history at {self.path}: {_reason(exc)}") from None
        except OSError as exc:
            raise HistoryError(f"cannot read the history at {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored(row: tuple[Any, ...]) -> StoredRun:
    from .._json import JSONError, loads

    values = dict(zip(_COLUMNS, row))
    try:
        record = loads(values["record"])
        models = loads(values["models"])
    except (JSONError, TypeError):  # a row written by something else
        record, models = {}, []
    return StoredRun(
        id=str(values["id"]), started=_number(values["started"]), duration=_number(values["duration"]),
        flow=str(values["flow"]), file=str(values["file"]), flow_hash=values["flow_hash"],
        status=str(values["status"]), models=[m for m in models if isinstance(m, str)] if isinstance(models, list) else [],
        prompt_tokens=_int(values["prompt_tokens"]), completion_tokens=_int(values["completion_tokens"]),
        total_tokens=_int(values["total_tokens"]), cost=_number(values["cost"]), error_type=values["error_type"],
        command=str(values["command"]), record=record if isinstance(record, dict) else {})


def _absolute(file: str) -> str:
    """The flow file's absolute path (the record keeps it as given, relative to where the run was started)."""
    try:
        return str(Path(file).absolute())
    except (OSError, ValueError):
        return file


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_INT64 = 2**63 - 1


def _int(value: Any) -> int:
    """A token count for an INTEGER column: a server's absurd count (it is untrusted) is cut to what one holds."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return max(-_INT64 - 1, min(value, _INT64))


def _record_json(text: str) -> str:
    """The record's JSON, or, past MAX_RECORD_BYTES, a stand-in saying so (the query columns stay whole)."""
    if len(text) <= MAX_RECORD_BYTES:
        return text
    from .._json import dumps

    return dumps({"omitted": f"the record was {len(text):,} characters, more than the history keeps"})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
