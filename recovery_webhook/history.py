"""History that survives restarts: transitions, alerts, repair attempts, settings.

SQLite in WAL mode. Every statement runs on one dedicated thread that owns the
connection, so the event loop never waits on the disk and writes never race.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    component TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_kind_component_ts ON events (kind, component, ts);

CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    component TEXT,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    repair TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    notifications INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen);

CREATE TABLE IF NOT EXISTS attempts (
    attempt_id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    alert_key TEXT,
    alertname TEXT,
    trigger TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    error TEXT,
    actions TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_component_started ON attempts (component, started_at);

CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS check_counts (
    component TEXT PRIMARY KEY,
    checks INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
"""

# Attempt statuses that count as a failed repair against the escalation limit.
FAILED_STATUSES = ("failure", "interrupted")


@dataclass(frozen=True)
class AlertRow:
    key: str
    fingerprint: str
    starts_at: str
    alertname: str
    component: str | None
    labels: dict[str, str]
    status: str
    repair: str
    first_seen: float
    last_seen: float
    notifications: int


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    component: str
    alert_key: str | None
    alertname: str | None
    trigger: str
    started_at: float
    ended_at: float | None
    status: str
    error: str | None
    actions: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "component": self.component,
            "alertname": self.alertname,
            "trigger": self.trigger,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "success": self.status == "success",
            "error_message": self.error,
            "duration_ms": (
                round((self.ended_at - self.started_at) * 1000, 1)
                if self.ended_at is not None
                else None
            ),
            "actions": self.actions,
        }


def _attempt_row(r: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        attempt_id=r[0],
        component=r[1],
        alert_key=r[2],
        alertname=r[3],
        trigger=r[4],
        started_at=r[5],
        ended_at=r[6],
        status=r[7],
        error=r[8],
        actions=json.loads(r[9]),
    )


class History:
    def __init__(self, path: Path, retention: float) -> None:
        self.path = path
        self.retention = retention
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="history")
        self._db: sqlite3.Connection | None = None

    # -- plumbing ----------------------------------------------------------------

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, func)

    def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None, "history is not open"
        with self._db:  # one transaction per call: all of it or nothing
            result = func(self._db)
        if isinstance(result, sqlite3.Cursor):
            # Close it on this thread: a cursor freed on the event loop's thread
            # resets its statement, which this thread may be running again by then
            # (sqlite3.InterfaceError "bad parameter or other API misuse").
            result.close()
        return result

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.isolation_level = "DEFERRED"
        db.executescript(SCHEMA)
        self._db = db

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    # -- events ------------------------------------------------------------------

    async def add_events(
        self, events: Iterable[tuple[float, str, str | None, dict[str, Any]]]
    ) -> None:
        rows = [
            (ts, kind, component, json.dumps(data, default=str))
            for ts, kind, component, data in events
        ]
        if rows:
            await self._run(
                lambda db: db.executemany(
                    "INSERT INTO events (ts, kind, component, data) VALUES (?, ?, ?, ?)", rows
                )
            )

    async def add_event(
        self, kind: str, component: str | None, data: dict[str, Any], ts: float | None = None
    ) -> None:
        await self.add_events([(time.time() if ts is None else ts, kind, component, data)])

    async def events(self, limit: int, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        def query(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if kinds:
                marks = ",".join("?" * len(kinds))
                cursor = db.execute(
                    f"SELECT id, ts, kind, component, data FROM events WHERE kind IN ({marks})"
                    " ORDER BY ts DESC, id DESC LIMIT ?",
                    (*kinds, limit),
                )
            else:
                cursor = db.execute(
                    "SELECT id, ts, kind, component, data FROM events"
                    " ORDER BY ts DESC, id DESC LIMIT ?",
                    (limit,),
                )
            return [
                {"id": i, "timestamp": ts, "type": kind, "component": comp, **json.loads(data)}
                for i, ts, kind, comp, data in cursor
            ]

        return await self._run(query)

    async def transitions_since(
        self, since: float
    ) -> list[tuple[float, str | None, dict[str, Any]]]:
        """Publishing and monitor-lifecycle events from ``since``, plus the last one before it."""

        def query(db: sqlite3.Connection) -> list[tuple[float, str | None, dict[str, Any]]]:
            kinds = ("publishing", "monitor_started", "monitor_stopped")
            before = db.execute(
                "SELECT ts, kind, data FROM events WHERE kind IN (?, ?, ?) AND ts < ?"
                " ORDER BY ts DESC, id DESC LIMIT 1",
                (*kinds, since),
            ).fetchall()
            after = db.execute(
                "SELECT ts, kind, data FROM events WHERE kind IN (?, ?, ?) AND ts >= ?"
                " ORDER BY ts, id",
                (*kinds, since),
            ).fetchall()
            return [(ts, kind, json.loads(data)) for ts, kind, data in [*before, *after]]

        return await self._run(query)

    # -- alerts ------------------------------------------------------------------

    async def load_alerts(self, since: float) -> list[AlertRow]:
        def query(db: sqlite3.Connection) -> list[AlertRow]:
            cursor = db.execute(
                "SELECT key, fingerprint, starts_at, alertname, component, labels, status, repair,"
                " first_seen, last_seen, notifications FROM alerts WHERE last_seen >= ?",
                (since,),
            )
            return [
                AlertRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), *r[6:]) for r in cursor
            ]

        return await self._run(query)

    async def record_alerts(
        self,
        upserts: Sequence[AlertRow],
        events: Sequence[tuple[float, str, str | None, dict[str, Any]]],
    ) -> None:
        """Store received alerts and their events in one transaction."""
        rows = [
            (
                a.key,
                a.fingerprint,
                a.starts_at,
                a.alertname,
                a.component,
                json.dumps(a.labels),
                a.status,
                a.repair,
                a.first_seen,
                a.last_seen,
                a.notifications,
            )
            for a in upserts
        ]
        event_rows = [(ts, kind, c, json.dumps(d, default=str)) for ts, kind, c, d in events]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET status = excluded.status,"
                " repair = excluded.repair, last_seen = excluded.last_seen,"
                " notifications = excluded.notifications, labels = excluded.labels",
                rows,
            )
            db.executemany(
                "INSERT INTO events (ts, kind, component, data) VALUES (?, ?, ?, ?)", event_rows
            )

        await self._run(write)

    async def set_alert_repair(self, key: str, repair: str) -> None:
        await self._run(
            lambda db: db.execute("UPDATE alerts SET repair = ? WHERE key = ?", (repair, key))
        )

    async def count_alerts(self) -> int:
        return await self._run(lambda db: db.execute("SELECT count(*) FROM alerts").fetchone()[0])

    # -- attempts ----------------------------------------------------------------

    async def save_attempt(self, attempt: AttemptRow) -> None:
        row = (
            attempt.attempt_id,
            attempt.component,
            attempt.alert_key,
            attempt.alertname,
            attempt.trigger,
            attempt.started_at,
            attempt.ended_at,
            attempt.status,
            attempt.error,
            json.dumps(attempt.actions, default=str),
        )
        await self._run(
            lambda db: db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (attempt_id) DO UPDATE SET ended_at = excluded.ended_at,"
                " status = excluded.status, error = excluded.error, actions = excluded.actions",
                row,
            )
        )

    async def attempt_id_taken(self, attempt_id: str) -> bool:
        return await self._run(
            lambda db: (
                db.execute("SELECT 1 FROM attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
                is not None
            )
        )

    async def mark_interrupted(self, now: float) -> list[AttemptRow]:
        """Attempts left ``running`` by a process that died: mark them interrupted."""

        def write(db: sqlite3.Connection) -> list[AttemptRow]:
            rows = db.execute(
                "SELECT attempt_id, component, alert_key, alertname, trigger, started_at,"
                " ended_at, status, error, actions FROM attempts WHERE status = 'running'"
            ).fetchall()
            db.execute(
                "UPDATE attempts SET status = 'interrupted', ended_at = ?,"
                " error = 'the monitor stopped during this repair' WHERE status = 'running'",
                (now,),
            )
            return [_attempt_row(r) for r in rows]

        return await self._run(write)

    async def failed_attempts_since(self, component: str, since: float) -> int:
        return await self._run(
            lambda db: db.execute(
                "SELECT count(*) FROM attempts WHERE component = ? AND started_at >= ?"
                " AND trigger <> 'manual' AND status IN (?, ?)",
                (component, since, *FAILED_STATUSES),
            ).fetchone()[0]
        )

    async def attempts(self, limit: int, component: str | None = None) -> list[AttemptRow]:
        def query(db: sqlite3.Connection) -> list[AttemptRow]:
            sql = (
                "SELECT attempt_id, component, alert_key, alertname, trigger, started_at,"
                " ended_at, status, error, actions FROM attempts"
            )
            args: tuple[Any, ...] = ()
            if component is not None:
                sql += " WHERE component = ?"
                args = (component,)
            sql += " ORDER BY started_at DESC LIMIT ?"
            rows = db.execute(sql, (*args, limit)).fetchall()
            return [_attempt_row(r) for r in rows]

        return await self._run(query)

    async def attempt_stats(self) -> dict[str, int]:
        def query(db: sqlite3.Connection) -> dict[str, int]:
            return dict(
                db.execute("SELECT status, count(*) FROM attempts GROUP BY status").fetchall()
            )

        return await self._run(query)

    # -- settings and counters ---------------------------------------------------

    async def get_setting(self, key: str) -> Any:
        row = await self._run(
            lambda db: db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else json.loads(row[0])

    async def settings(self, prefix: str) -> dict[str, Any]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT key, value FROM settings WHERE key LIKE ? ESCAPE '\\'",
                (prefix.replace("_", "\\_") + "%",),
            ).fetchall()
        )
        return {key[len(prefix) :]: json.loads(value) for key, value in rows}

    async def set_setting(self, key: str, value: Any) -> None:
        text = json.dumps(value)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                (key, text, text),
            )
        )

    async def add_check_counts(self, deltas: dict[str, tuple[int, int]]) -> None:
        rows = [
            (c, checks, failures) for c, (checks, failures) in deltas.items() if checks or failures
        ]
        if rows:
            await self._run(
                lambda db: db.executemany(
                    "INSERT INTO check_counts VALUES (?, ?, ?) ON CONFLICT (component)"
                    " DO UPDATE SET checks = checks + excluded.checks,"
                    " failures = failures + excluded.failures",
                    rows,
                )
            )

    async def check_counts(self) -> dict[str, tuple[int, int]]:
        rows = await self._run(
            lambda db: db.execute("SELECT component, checks, failures FROM check_counts").fetchall()
        )
        return {c: (checks, failures) for c, checks, failures in rows}

    async def prune(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - self.retention

        def write(db: sqlite3.Connection) -> int:
            removed = db.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            removed += db.execute("DELETE FROM alerts WHERE last_seen < ?", (cutoff,)).rowcount
            removed += db.execute(
                "DELETE FROM attempts WHERE started_at < ? AND status <> 'running'", (cutoff,)
            ).rowcount
            return removed

        return await self._run(write)
