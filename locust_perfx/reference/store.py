"""SQLite storage for the reference platform: endpoints, environments, runs and the call log.

The server is threaded, so every operation opens its own connection, and every state
change runs inside ``BEGIN IMMEDIATE``: the status check, the update and the call-log
row are one atomic step, which is what makes "a final status is accepted once" true
under concurrent calls. JSON bodies are stored as text.

Files written by an older version keep working: opening one adds the columns it lacks
(:data:`_ADDED_COLUMNS`), empty, which reads as "none" (no thresholds), and the tables it
lacks (:data:`_ADDED_TABLES`), empty, which reads as "no progress history".
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

#: Seconds a connection waits for another thread's write transaction before giving up.
BUSY_TIMEOUT = 5.0
#: The largest integer SQLite takes: a run list's ``limit`` past it (the API allows any) is all.
SQLITE_MAX_INT = 2**63 - 1


# Which statuses each call is accepted from, and the status it leads to (None: unchanged).
_ALLOWED_FROM: dict[str, frozenset[str]] = {
    "start": frozenset({"pending"}),
    "complete": frozenset({"running"}),
    "fail": frozenset({"pending", "running"}),
    "progress": frozenset({"running"}),
}
_NEXT_STATUS: dict[str, str | None] = {
    "start": "running",
    "complete": "completed",
    "fail": "failed",
    "progress": None,
}

# The tables as first released; _ADDED_COLUMNS holds what came later.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    argument_schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),
    environment_id INTEGER NOT NULL REFERENCES environments(id),
    arguments TEXT,
    host TEXT,
    locust TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    reason TEXT,
    exit_code INTEGER,
    summary TEXT,
    progress TEXT,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    call TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    at TEXT NOT NULL
);
"""

# Tables added since. ``progress`` keeps every accepted progress body, in arrival order, for
# the charts of the HTML pages; ``runs.progress`` keeps only the last one, as the API shows.
_ADDED_TABLES = """
CREATE TABLE IF NOT EXISTS progress (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS progress_by_run ON progress (run_id, seq);
"""

# Columns added since, as (table, column definition): added to a file that lacks them
# when it is opened, so a new file and an old one end up with the same tables.
_ADDED_COLUMNS = (
    ("endpoints", "thresholds TEXT"),
    ("runs", "thresholds TEXT"),
    ("endpoints", "baseline_run_id TEXT"),
    ("runs", "baseline_run_id TEXT"),
)

_RUN_SELECT = """
SELECT r.*, e.name AS endpoint_name, e.argument_schema, e.thresholds AS endpoint_thresholds,
       e.baseline_run_id AS endpoint_baseline_run_id,
       v.name AS environment_name, v.host AS environment_host
FROM runs r JOIN endpoints e ON e.id = r.endpoint_id JOIN environments v ON v.id = r.environment_id
"""


class NotFound(LookupError):
    """The run, endpoint or environment does not exist (HTTP 404)."""


class Conflict(Exception):
    """The call is not allowed in the run's current state, or the id is taken (HTTP 409)."""


class Invalid(ValueError):
    """The request refers to something that cannot be used (HTTP 400)."""


def utc_iso(moment: datetime | None = None) -> str:
    """Format as ISO-8601 UTC with ``Z``; whole seconds stay whole so values round-trip."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def new_run_id(moment: datetime | None = None) -> str:
    """A run id like ``run_20261123_170000_ab12cd``: UTC time plus 6 random hex digits."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return f"run_{moment:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def watchdog_reason(timeout: float) -> str:
    """The failure reason the progress watchdog writes (tests import it)."""
    return f"no progress for {timeout:g} s: the load generator went silent"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _run_from_row(row: sqlite3.Row) -> JSON:
    return {
        "id": row["id"],
        "status": row["status"],
        "endpoint": {
            "id": row["endpoint_id"],
            "name": row["endpoint_name"],
            "argument_schema": _loads(row["argument_schema"]),
            "thresholds": _loads(row["endpoint_thresholds"]),
            "baseline_run_id": row["endpoint_baseline_run_id"],
        },
        "environment": {
            "id": row["environment_id"],
            "name": row["environment_name"],
            "host": row["environment_host"],
        },
        "thresholds": _loads(row["thresholds"]),
        "baseline_run_id": row["baseline_run_id"],
        "arguments": _loads(row["arguments"]),
        "host": row["host"],
        "locust": _loads(row["locust"]),
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "reason": row["reason"],
        "exit_code": row["exit_code"],
        "summary": _loads(row["summary"]),
        "progress": _loads(row["progress"]),
    }


def _conflict_message(run_id: str, call: str, status: str) -> str:
    if call == "start":
        return f"run {run_id} is already {status}; create a new run"
    if call == "progress":
        return f"run {run_id} is {status}, not running: progress is accepted only while running"
    if status in ("completed", "failed"):
        return f"run {run_id} is already {status}; a final status is accepted only once"
    return f"run {run_id} is pending, not running: call start before complete"


class Store:
    """All reads and writes of one SQLite file.

    >>> store = Store("perfx-platform.sqlite3")
    >>> endpoint_id = store.upsert_endpoint({"name": "demo", "argument_schema": {"parameters": []}})
    >>> environment_id = store.upsert_environment("local", "http://127.0.0.1:8089")
    >>> store.create_run(None, endpoint_id, environment_id)["status"]
    'pending'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA + _ADDED_TABLES)
        with self._write() as conn:  # one server at a time checks and adds, on a shared file
            for table, column in _ADDED_COLUMNS:
                present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column.split()[0] not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so check-then-update is atomic."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- endpoints and environments ---------------------------------------------------

    def create_endpoint(self, endpoint: JSON) -> JSON:
        """Store a new endpoint from its body (name, argument_schema, optional thresholds)."""
        name, thresholds = endpoint["name"], endpoint.get("thresholds")
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO endpoints (name, argument_schema, thresholds) VALUES (?, ?, ?)",
                    (name, _dumps(endpoint["argument_schema"]), _dumps(thresholds)),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"endpoint {name!r} already exists; pick another name or create the run "
                    "with an inline endpoint to update it"
                ) from None
        return {
            "id": cur.lastrowid,
            "name": name,
            "argument_schema": endpoint["argument_schema"],
            "thresholds": thresholds,
            "baseline_run_id": None,
        }

    def create_environment(self, name: str, host: str) -> JSON:
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO environments (name, host) VALUES (?, ?)", (name, host)
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"environment {name!r} already exists; pick another name or create the run "
                    "with an inline environment to update it"
                ) from None
        return {"id": cur.lastrowid, "name": name, "host": host}

    def upsert_endpoint(self, endpoint: JSON) -> int:
        """Reuse the endpoint named in the body, or create it; return its id.

        The body's schema replaces the stored one. Its ``thresholds`` do too when the body
        has the key (``None`` clears them), and are kept when it has not, as in a JSON merge
        patch: a run created without criteria must not wipe the endpoint's.
        """
        update = "argument_schema = excluded.argument_schema"
        if "thresholds" in endpoint:
            update += ", thresholds = excluded.thresholds"
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO endpoints (name, argument_schema, thresholds) VALUES (?, ?, ?) "
                f"ON CONFLICT(name) DO UPDATE SET {update} RETURNING id",
                (
                    endpoint["name"],
                    _dumps(endpoint["argument_schema"]),
                    _dumps(endpoint.get("thresholds")),
                ),
            ).fetchone()
        return int(row["id"])

    def upsert_environment(self, name: str, host: str) -> int:
        """Reuse the environment called ``name``, replacing its host; create it if new."""
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO environments (name, host) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET host = excluded.host RETURNING id",
                (name, host),
            ).fetchone()
        return int(row["id"])

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str | None,
        endpoint_id: int,
        environment_id: int,
        thresholds: list[Any] | None = None,
        baseline_run_id: str | None = None,
    ) -> JSON:
        """Store a pending run; ``thresholds`` are its own criteria, over the endpoint's;
        ``baseline_run_id`` its own baseline, over the endpoint's."""
        run_id = run_id or new_run_id()
        with self._write() as conn:
            for table, key, value in (
                ("endpoints", "endpoint_id", endpoint_id),
                ("environments", "environment_id", environment_id),
            ):
                if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (value,)).fetchone() is None:
                    raise Invalid(
                        f"{key} {value}: no such {table[:-1]}; create it with "
                        f"POST /api/perf/{table} or pass it inline"
                    )
            try:
                conn.execute(
                    "INSERT INTO runs (id, status, endpoint_id, environment_id, thresholds, "
                    "baseline_run_id, created_at) VALUES (?, 'pending', ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        endpoint_id,
                        environment_id,
                        _dumps(thresholds),
                        baseline_run_id,
                        utc_iso(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"run {run_id} already exists; choose another id or omit it"
                ) from None
            return self._get(conn, run_id)

    def get_run(self, run_id: str) -> JSON:
        with self._connect() as conn:
            return self._get(conn, run_id)

    def list_runs(
        self,
        *,
        endpoint: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """The runs, newest first; each filter given keeps the runs that match it."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("e.name", endpoint), ("v.name", environment), ("r.status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY r.seq DESC"
        if limit is not None:  # past SQLite's integers ("datatype mismatch"), a limit is no limit
            query += " LIMIT ?"
            args.append(min(limit, SQLITE_MAX_INT))
        with self._connect() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_run_from_row(row) for row in rows]

    def set_endpoint_baseline(self, endpoint: str, run_id: str | None) -> JSON:
        """Make ``run_id`` (a completed run of ``endpoint``) its baseline; ``None`` clears it."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM endpoints WHERE name = ?", (endpoint,)).fetchone()
            if row is None:
                raise NotFound(f"endpoint {endpoint!r} not found")
            if run_id is not None:
                run = self._get(conn, run_id)
                if run["endpoint"]["name"] != endpoint:
                    raise Invalid(
                        f"run {run_id} belongs to endpoint {run['endpoint']['name']!r}, "
                        f"not {endpoint!r}; pick a run of {endpoint!r}"
                    )
                if run["status"] != "completed":
                    raise Invalid(
                        f"run {run_id} is {run['status']}, not completed; a baseline is a "
                        "run that completed"
                    )
            conn.execute(
                "UPDATE endpoints SET baseline_run_id = ? WHERE id = ?", (run_id, row["id"])
            )
        return {"endpoint": endpoint, "baseline_run_id": run_id}

    def calls(self, run_id: str) -> list[JSON]:
        """Every state call the run received, in arrival order, refused ones included."""
        with self._connect() as conn:
            self._get(conn, run_id)
            rows = conn.execute(
                "SELECT call, http_status, at FROM calls WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [dict(row) for row in rows]

    def progress(self, run_id: str | None = None) -> dict[str, list[JSON]]:
        """The accepted progress bodies of one run (or of every run), oldest first, by run id.

        Runs that never reported progress are left out: the pages chart what there is.
        """
        where, args = ("", ()) if run_id is None else (" WHERE run_id = ?", (run_id,))
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT run_id, body FROM progress{where} ORDER BY seq", args
            ).fetchall()
        history: dict[str, list[JSON]] = {}
        for row in rows:
            history.setdefault(row["run_id"], []).append(json.loads(row["body"]))
        return history

    def transition(self, run_id: str, call: str, body: JSON, *, progress_timeout: float) -> JSON:
        """Apply a state call, log it, and return the updated run; raise Conflict if refused.

        The watchdog runs first in the same transaction, so a call never succeeds on a
        run that a read at the same moment would already show as failed.
        """
        refused: str | None = None
        with self._write() as conn:
            self._expire(conn, progress_timeout)
            status = self._get(conn, run_id)["status"]
            if status in _ALLOWED_FROM[call]:
                self._apply(conn, run_id, call, body)
                http_status = 200
            else:
                refused = _conflict_message(run_id, call, status)
                http_status = 409
            conn.execute(
                "INSERT INTO calls (run_id, call, http_status, at) VALUES (?, ?, ?, ?)",
                (run_id, call, http_status, utc_iso()),
            )
            run = self._get(conn, run_id)
        # Raised after COMMIT: the refused call must stay in the log.
        if refused is not None:
            raise Conflict(refused)
        return run

    def expire_silent_runs(self, progress_timeout: float) -> list[str]:
        """Fail running runs with no start/progress for ``progress_timeout`` s (0 disables)."""
        with self._write() as conn:
            return self._expire(conn, progress_timeout)

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _get(conn: sqlite3.Connection, run_id: str) -> JSON:
        row = conn.execute(_RUN_SELECT + " WHERE r.id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(
                f"run {run_id} not found: create it first "
                "(POST /api/perf/runs or `perfx-platform new-run`)"
            )
        return _run_from_row(row)

    @staticmethod
    def _apply(conn: sqlite3.Connection, run_id: str, call: str, body: JSON) -> None:
        now = time.time()
        if call == "start":
            conn.execute(
                "UPDATE runs SET status = ?, arguments = ?, host = ?, started_at = ?, locust = ?, "
                "last_seen = ? WHERE id = ?",
                (
                    _NEXT_STATUS[call],
                    _dumps(body["arguments"]),
                    body["host"],
                    body["started_at"],
                    _dumps(body.get("locust")),
                    now,
                    run_id,
                ),
            )
        elif call == "progress":
            conn.execute(
                "UPDATE runs SET progress = ?, last_seen = ? WHERE id = ?",
                (_dumps(body), now, run_id),
            )
            conn.execute(
                "INSERT INTO progress (run_id, body) VALUES (?, ?)", (run_id, _dumps(body))
            )
        else:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, reason = ?, exit_code = ?, "
                "summary = ? WHERE id = ?",
                (
                    _NEXT_STATUS[call],
                    body["finished_at"],
                    body.get("reason"),
                    body.get("exit_code"),
                    _dumps(body.get("summary")),
                    run_id,
                ),
            )

    @staticmethod
    def _expire(conn: sqlite3.Connection, progress_timeout: float) -> list[str]:
        if progress_timeout <= 0:
            return []
        rows = conn.execute(
            "UPDATE runs SET status = 'failed', reason = ?, finished_at = ? "
            "WHERE status = 'running' AND last_seen < ? RETURNING id",
            (watchdog_reason(progress_timeout), utc_iso(), time.time() - progress_timeout),
        ).fetchall()
        expired = [str(row["id"]) for row in rows]
        for run_id in expired:
            logger.warning("run %s: %s", run_id, watchdog_reason(progress_timeout))
        return expired
