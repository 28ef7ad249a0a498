"""History that survives restarts: transitions, alerts, repair attempts, settings.

SQLite in WAL mode. Every statement runs on one dedicated thread that owns the
connection, so the event loop never waits on the disk and writes never race.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import to_json

from exporter.private_files import make_private, open_private

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

# Many rows per statement: one sqlite3_step for a chunk instead of one per row,
# and each step is a release and re-acquisition of the GIL, which the event loop
# holds most of the time during an alert storm. "{}" is the list of row groups.
_UPSERT_ALERTS = (
    "INSERT INTO alerts VALUES {} ON CONFLICT (key) DO UPDATE SET status = excluded.status,"
    " repair = excluded.repair, last_seen = excluded.last_seen,"
    " notifications = excluded.notifications, labels = excluded.labels"
)
_INSERT_EVENTS = "INSERT INTO events (ts, kind, component, data) VALUES {}"
# UPDATE ... FROM needs SQLite 3.33; older ones update row by row.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
_TOUCH_ALERTS = (
    "UPDATE alerts SET notifications = v.column1, last_seen = v.column2"
    " FROM (VALUES {}) AS v WHERE alerts.key = v.column3"
)
# Rows per statement: powers of two up to this (few distinct statements for
# sqlite3's statement cache; 704 parameters at most, below the 999 of old SQLite
# releases). Larger chunks mean fewer GIL round trips but hold the GIL longer
# while binding: measured, 1024 made a storm's first round 4 ms slower than 64.
_CHUNK = 64
_encode_json = json.JSONEncoder(default=str).encode


def _compact_json(value: Any) -> str:
    """JSON as pydantic-core writes it (compact, UTF-8 as is): a quarter of
    json.dumps's time, for the labels and events of every new alert. Readers
    only ever json.loads() it."""
    try:
        return to_json(value, fallback=str).decode()
    except (ValueError, TypeError, UnicodeDecodeError):  # e.g. a lone surrogate
        return _encode_json(value)


def _insert_rows(db: sqlite3.Connection, sql: str, width: int, values: list[Any]) -> None:
    """Run ``sql`` (with ``{}`` for the row groups) over ``values``, a flat list of
    rows of ``width`` values, in chunks of _CHUNK, ... 4, 2, 1 rows."""
    rows = len(values) // width
    start = 0
    size = _CHUNK
    while rows:
        while size > rows:
            size //= 2
        end = start + size * width
        db.execute(_statement(sql, width, size), values[start:end])
        start = end
        rows -= size


@functools.lru_cache(maxsize=128)
def _statement(sql: str, width: int, rows: int) -> str:
    group = "(" + ", ".join("?" * width) + ")"
    return sql.format(", ".join([group] * rows))


def _closed(result: T) -> T:
    if isinstance(result, sqlite3.Cursor):
        # Close it on the history thread: a cursor freed on the event loop's thread
        # resets its statement, which this thread may be running again by then
        # (sqlite3.InterfaceError "bad parameter or other API misuse").
        result.close()
    return result


def _deliver(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: the outcomes of the history thread's calls."""
    for future, ok, value in results:
        if future.done():  # cancelled by its caller
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@dataclass(slots=True)
class AlertRow:
    """One alert instance as the engine keeps it in memory and history stores it.

    Mutable: the engine bumps ``notifications`` and ``last_seen`` in place for
    every repeat (the hot path of an alert storm)."""

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


def _save_attempt(db: sqlite3.Connection, attempt: AttemptRow) -> None:
    db.execute(
        "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (attempt_id) DO UPDATE SET ended_at = excluded.ended_at,"
        " status = excluded.status, error = excluded.error, actions = excluded.actions",
        (
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
        ),
    )


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


class _AlertWrite:
    """The write of :meth:`History.submit_alerts`: rows ready for multi-row
    statements, which the history thread merges with its neighbours in a batch."""

    __slots__ = ("alert_values", "event_values")

    def __init__(self, alert_values: list[Any], event_values: list[Any]) -> None:
        self.alert_values = alert_values
        self.event_values = event_values

    def __call__(self, db: sqlite3.Connection) -> None:
        _insert_rows(db, _UPSERT_ALERTS, 11, self.alert_values)
        _insert_rows(db, _INSERT_EVENTS, 4, self.event_values)


_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class History:
    def __init__(self, path: Path, retention: float) -> None:
        self.path = path
        self.retention = retention
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="history")
        self._db: sqlite3.Connection | None = None
        # Calls waiting for the history thread, and whether a drain is scheduled.
        self._jobs: list[_Job] = []
        self._jobs_lock = threading.Lock()
        self._drain_scheduled = False

    # -- plumbing ----------------------------------------------------------------

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(func)

    def _submit(self, func: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``func`` for the history thread now; the future says when it is
        done (committed, for a write).

        Calls run one at a time in the order they were submitted: a later write
        always lands after an earlier one. Group commit: the calls that queued up
        while the thread was busy run together, in order, in one transaction
        (consecutive alert writes merged into multi-row statements); if that
        fails, each runs again in its own, so that only a failing call fails.
        Under an alert storm this turns fifty commits into two or three, and the
        history thread's hundreds of waits for the GIL (one per SQLite step), which
        the busy event loop holds, into dozens."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._jobs_lock:
            self._jobs.append((func, future, loop))
            if self._drain_scheduled:
                return future
            self._drain_scheduled = True
        self._executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        """On the history thread: run what is queued, then hand out the results."""
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
            self._drain_scheduled = False
        try:
            outcomes = self._outcomes([func for func, _, _ in jobs])
        except BaseException as exc:  # nobody may be left waiting forever
            outcomes = [(False, exc)] * len(jobs)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, results)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _outcomes(self, funcs: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        if len(funcs) > 1:
            try:
                return self._batch(funcs)
            except Exception:
                pass  # rolled back: each call alone, in its own transaction, as before
        outcomes: list[tuple[bool, Any]] = []
        for func in funcs:
            try:
                outcomes.append((True, self._call(func)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    def _batch(self, funcs: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        """Run ``funcs`` in order in one transaction; raises if any of them does."""
        db = self._db
        assert db is not None, "history is not open"
        outcomes: list[tuple[bool, Any]] = []
        alerts: list[Any] = []
        events: list[Any] = []
        with db:
            for func in funcs:
                if isinstance(func, _AlertWrite):
                    alerts += func.alert_values
                    events += func.event_values
                    outcomes.append((True, None))
                    continue
                if alerts or events:
                    _insert_rows(db, _UPSERT_ALERTS, 11, alerts)
                    _insert_rows(db, _INSERT_EVENTS, 4, events)
                    alerts, events = [], []
                outcomes.append((True, _closed(func(db))))
            _insert_rows(db, _UPSERT_ALERTS, 11, alerts)
            _insert_rows(db, _INSERT_EVENTS, 4, events)
        return outcomes

    def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None, "history is not open"
        with self._db:  # one transaction per call: all of it or nothing
            result = func(self._db)
        return _closed(result)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 whatever the umask: it holds what repair commands printed. SQLite
        # gives the WAL and SHM files the database file's mode when it creates them.
        os.close(open_private(self.path, os.O_RDWR))
        for suffix in ("-wal", "-shm"):
            make_private(Path(f"{self.path}{suffix}"))
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
        rows = [(ts, kind, component, _encode_json(data)) for ts, kind, component, data in events]
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

    def submit_alerts(
        self,
        upserts: Sequence[AlertRow],
        events: Sequence[tuple[float, str, str | None, dict[str, Any]]],
    ) -> asyncio.Future[None]:
        """Queue storing received alerts and their events (in one transaction):
        the rows are read at once (later changes to them are not part of this
        write); await the future for the commit."""
        dumps = _compact_json
        alert_values = [
            value
            for a in upserts
            for value in (
                a.key,
                a.fingerprint,
                a.starts_at,
                a.alertname,
                a.component,
                dumps(a.labels),
                a.status,
                a.repair,
                a.first_seen,
                a.last_seen,
                a.notifications,
            )
        ]
        event_values = [value for ts, kind, c, d in events for value in (ts, kind, c, dumps(d))]
        return self._submit(_AlertWrite(alert_values, event_values))

    def submit_touch_alerts(self, counts: Sequence[tuple[int, float, str]]) -> asyncio.Future[None]:
        """Queue setting (notifications, last_seen) of known alerts, by key: the
        counts of repeats, in bulk."""
        values = [value for row in counts for value in row]

        def write(db: sqlite3.Connection) -> None:
            if _UPDATE_FROM:
                _insert_rows(db, _TOUCH_ALERTS, 3, values)
            else:
                db.executemany(
                    "UPDATE alerts SET notifications = ?, last_seen = ? WHERE key = ?", counts
                )

        return self._submit(write)

    async def set_alert_repair(self, key: str, repair: str) -> None:
        await self._run(
            lambda db: db.execute("UPDATE alerts SET repair = ? WHERE key = ?", (repair, key))
        )

    # -- attempts ----------------------------------------------------------------

    async def start_attempt(
        self,
        attempt: AttemptRow,
        ids: Callable[[], Iterable[str]],
        alert_key: str | None = None,
    ) -> AttemptRow:
        """Store a new attempt under the first of ``ids()`` that no attempt has,
        and mark the repair of the alert ``alert_key`` (if any) running, in one
        transaction; the attempt as stored, with that id."""

        def write(db: sqlite3.Connection) -> AttemptRow:
            taken = "SELECT 1 FROM attempts WHERE attempt_id = ?"
            attempt_id = next(i for i in ids() if db.execute(taken, (i,)).fetchone() is None)
            row = replace(attempt, attempt_id=attempt_id)
            _save_attempt(db, row)
            if alert_key is not None:
                db.execute("UPDATE alerts SET repair = 'running' WHERE key = ?", (alert_key,))
            return row

        return await self._run(write)

    async def save_attempt(self, attempt: AttemptRow) -> None:
        """Store how far an attempt has got."""
        await self._run(lambda db: _save_attempt(db, attempt))

    async def end_attempt(self, attempt: AttemptRow) -> None:
        """Store an attempt's end and its ``recovery_attempt`` event, in one
        transaction."""
        event = _encode_json(attempt.as_json())

        def write(db: sqlite3.Connection) -> None:
            _save_attempt(db, attempt)
            db.execute(
                "INSERT INTO events (ts, kind, component, data) VALUES (?, ?, ?, ?)",
                (attempt.ended_at, "recovery_attempt", attempt.component, event),
            )

        await self._run(write)

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
