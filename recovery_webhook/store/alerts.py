"""The alert ledger: each alert instance recorded once, and the repair it is owed.

Intake (any monitor, any Alertmanager) writes what it heard: a new alert, a
resolution, repeat counts. It never writes the repair state of an alert already
recorded, except that a resolution ends a repair that had not started yet. The
repair's own progress is written by the holder of the component's lease, fenced
by it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from recovery_webhook.states import CANCELLED_BY_RESOLUTION, OWED, RepairState
from recovery_webhook.store.events import EVENT_TYPES, EVENT_WIDTH, INSERT_EVENTS
from recovery_webhook.store.leases import fence
from recovery_webhook.store.records import AlertRow, Event, Lease, encode_json
from recovery_webhook.store.worker import Db

if TYPE_CHECKING:
    from recovery_webhook.store.base import Store

_COLUMNS = (
    "key, fingerprint, starts_at, alertname, component, labels, status, repair,"
    " first_seen, last_seen, notifications, retry_at, note"
)
ALERT_WIDTH = 11
_ALERT_TYPES = ("text",) * 8 + ("float8", "float8", "int8")
_TOUCH_TYPES = ("int8", "float8", "text")
_CANCELLED = ", ".join(f"'{s.value}'" for s in CANCELLED_BY_RESOLUTION)
_OWED = ", ".join(f"'{s.value}'" for s in OWED)
_RESOLVED = RepairState.RESOLVED.value
_CANCELLED_STATES = frozenset(s.value for s in CANCELLED_BY_RESOLUTION)
_RUNNING = RepairState.RUNNING.value
# ``notifications`` in a write is how many deliveries it adds.
_UPSERT = (
    "INSERT INTO alerts (key, fingerprint, starts_at, alertname, component, labels, status,"
    " repair, first_seen, last_seen, notifications) VALUES {}"
    " ON CONFLICT (key) DO UPDATE SET"
    " status = CASE WHEN excluded.status = 'resolved' THEN 'resolved' ELSE alerts.status END,"
    f" repair = CASE WHEN excluded.status = 'resolved' AND alerts.repair IN ({_CANCELLED})"
    f" THEN '{_RESOLVED}' ELSE alerts.repair END,"
    " last_seen = {greatest}(alerts.last_seen, excluded.last_seen),"
    " notifications = alerts.notifications + excluded.notifications"
)
_TOUCH = (
    "UPDATE alerts SET notifications = alerts.notifications + v.column1,"
    " last_seen = {greatest}(alerts.last_seen, v.column2)"
    " FROM (VALUES {{}}) AS v WHERE alerts.key = v.column3"
)
# UPDATE ... FROM needs SQLite 3.33; older ones update row by row.
_SQLITE_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def alert_row(r: Sequence[Any]) -> AlertRow:
    return AlertRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), *r[6:])


def _merged(values: list[Any]) -> list[Any]:
    """One row per key (PostgreSQL refuses a statement that upserts a row twice):
    deliveries add up, the latest state wins, a resolution sticks."""
    rows: dict[str, list[Any]] = {}
    for start in range(0, len(values), ALERT_WIDTH):
        row = values[start : start + ALERT_WIDTH]
        known = rows.get(row[0])
        if known is None:
            rows[row[0]] = list(row)
            continue
        if row[6] == "resolved":
            known[6] = "resolved"
            if known[7] in _CANCELLED_STATES:
                known[7] = _RESOLVED
        known[9] = max(known[9], row[9])
        known[10] += row[10]
    return [value for row in rows.values() for value in row]


def _sorted_rows(values: list[Any], width: int, column: int) -> list[Any]:
    rows = [values[i : i + width] for i in range(0, len(values), width)]
    rows.sort(key=lambda row: row[column] or "")
    return [value for row in rows for value in row]


class AlertWrite:
    """Received alerts and their events, in one transaction; back-to-back
    writes become multi-row statements."""

    batched: ClassVar[bool] = True
    __slots__ = ("alert_values", "event_values", "rows")

    def __init__(self, alert_values: list[Any], event_values: list[Any]) -> None:
        self.alert_values = alert_values
        self.event_values = event_values
        self.rows = len(alert_values) // ALERT_WIDTH + len(event_values) // EVENT_WIDTH

    def __call__(self, db: Db) -> None:
        self.run_together(db, [self])

    @classmethod
    def run_together(cls, db: Db, jobs: Sequence[AlertWrite]) -> None:
        alerts = [v for job in jobs for v in job.alert_values]
        events = [v for job in jobs for v in job.event_values]
        if len(jobs) > 1:
            alerts = _merged(alerts)
        if db.dialect.lock_row:
            # Several monitors write the same alerts at once: rows locked in one
            # order (by key) can never deadlock against each other.
            alerts = _sorted_rows(alerts, ALERT_WIDTH, 0)
            events = _sorted_rows(events, EVENT_WIDTH, 5)
        upsert = _UPSERT.replace("{greatest}", db.dialect.greatest)
        db.insert_rows(upsert, ALERT_WIDTH, alerts, _ALERT_TYPES)
        db.insert_rows(INSERT_EVENTS, EVENT_WIDTH, events, EVENT_TYPES)


class TouchAlerts:
    """Deliveries of known alerts to add: (count, last_seen, key) rows."""

    __slots__ = ("counts", "rows")

    def __init__(self, counts: Sequence[tuple[int, float, str]]) -> None:
        self.counts = counts
        self.rows = len(counts)

    def __call__(self, db: Db) -> None:
        greatest = db.dialect.greatest
        if db.dialect.name != "sqlite" or _SQLITE_UPDATE_FROM:
            counts = (
                sorted(self.counts, key=lambda row: row[2]) if db.dialect.lock_row else self.counts
            )
            values = [value for row in counts for value in row]
            db.insert_rows(_TOUCH.format(greatest=greatest), 3, values, _TOUCH_TYPES)
            return
        for count, last_seen, key in self.counts:
            db.run(
                "UPDATE alerts SET notifications = notifications + ?,"
                f" last_seen = {greatest}(last_seen, ?) WHERE key = ?",
                (count, last_seen, key),
            )


class AlertsRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- intake ------------------------------------------------------------------------

    def record(
        self,
        rows: Sequence[AlertRow],
        deliveries: Sequence[int],
        event_values: list[Any],
    ) -> asyncio.Future[None]:
        """Queue recording alerts as intake heard them (``deliveries``: how many
        notifications of each to add), with their events (flat rows of
        ``events.event_values``). The rows are read now."""
        dumps = encode_json
        values = [
            value
            for a, delivered in zip(rows, deliveries, strict=True)
            for value in (
                a.key,
                a.fingerprint,
                a.starts_at,
                a.alertname,
                a.component,
                dumps(a.labels),
                a.status,
                str(a.repair),
                a.first_seen,
                a.last_seen,
                delivered,
            )
        ]
        return self._store.write(AlertWrite(values, event_values))

    def add_deliveries(self, counts: Sequence[tuple[int, float, str]]) -> asyncio.Future[None]:
        """Queue adding (count, last_seen) to known alerts, by key."""
        return self._store.write(TouchAlerts(counts))

    # -- reads -------------------------------------------------------------------------

    async def since(self, since: float) -> list[AlertRow]:
        """Alerts heard of from ``since`` (their last notification)."""
        return await self._rows(f"SELECT {_COLUMNS} FROM alerts WHERE last_seen >= ?", (since,))

    async def get(self, key: str) -> AlertRow | None:
        found = await self._rows(f"SELECT {_COLUMNS} FROM alerts WHERE key = ?", (key,))
        return found[0] if found else None

    async def next_owed(self, component: str, now: float) -> AlertRow | None:
        """The oldest firing alert of ``component`` whose repair is due."""
        found = await self._rows(
            f"SELECT {_COLUMNS} FROM alerts WHERE component = ? AND status = 'firing'"
            f" AND repair IN ({_OWED}) AND (retry_at IS NULL OR retry_at <= ?)"
            " ORDER BY first_seen, key LIMIT 1",
            (component, now),
        )
        return found[0] if found else None

    async def first_firing(self, since: float) -> dict[str, float]:
        """Per component, when the first of its alerts still firing (heard of from
        ``since``) arrived."""

        def query(db: Db) -> dict[str, float]:
            rows = db.rows(
                "SELECT component, min(first_seen) FROM alerts WHERE last_seen >= ?"
                " AND status = 'firing' AND component IS NOT NULL GROUP BY component",
                (since,),
            )
            return {c: float(first) for c, first in rows}

        result: dict[str, float] = await self._store.call(query)
        return result

    async def owed(self) -> dict[str, float | None]:
        """Components with firing alerts still owed a repair: when the soonest is
        due (None: now)."""

        def query(db: Db) -> dict[str, float | None]:
            rows = db.rows(
                "SELECT component, min(coalesce(retry_at, 0)) FROM alerts"
                f" WHERE status = 'firing' AND repair IN ({_OWED}) AND component IS NOT NULL"
                " GROUP BY component"
            )
            return {c: (due or None) for c, due in rows}

        result: dict[str, float | None] = await self._store.call(query)
        return result

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[AlertRow]:
        def query(db: Db) -> list[AlertRow]:
            return [alert_row(r) for r in db.rows(sql, params)]

        result: list[AlertRow] = await self._store.call(query)
        return result

    # -- the repair's progress (fenced) ------------------------------------------------

    async def set_repair(
        self,
        key: str,
        repair: RepairState,
        lease: Lease | None,
        *,
        retry_at: float | None = None,
        note: str | None = None,
        events: Sequence[Event] = (),
        monitor: str | None = None,
    ) -> None:
        """Set an alert's repair state (and its events), fenced by ``lease``
        when given."""
        from recovery_webhook.store.events import event_values

        values = event_values(events, monitor)

        def write(db: Db) -> None:
            if lease is not None:
                fence(db, lease)
            db.run(
                "UPDATE alerts SET repair = ?, retry_at = ?, note = ? WHERE key = ?",
                (repair.value, retry_at, note, key),
            )
            db.insert_rows(INSERT_EVENTS, EVENT_WIDTH, values, EVENT_TYPES)

        await self._store.call(write)

    async def retry_unless_resolved(self, key: str, lease: Lease, retry_at: float) -> RepairState:
        """After a failed repair: a retry at ``retry_at`` if the alert still fires,
        else the repair ends resolved (fenced by ``lease``); the state set."""
        retry, resolved = RepairState.RETRY_PENDING.value, RepairState.RESOLVED.value

        def write(db: Db) -> RepairState:
            fence(db, lease)
            row = db.one(
                f"UPDATE alerts SET repair = CASE WHEN status = 'firing' THEN '{retry}'"
                f" ELSE '{resolved}' END, retry_at = CASE WHEN status = 'firing' THEN ?"
                " ELSE NULL END, note = NULL WHERE key = ? RETURNING repair",
                (retry_at, key),
            )
            return RepairState(row[0]) if row else RepairState.RESOLVED

        result: RepairState = await self._store.call(write)
        return result


def mark_running(db: Db, key: str) -> None:
    """In an attempt's first write: its alert's repair is running."""
    db.run(
        f"UPDATE alerts SET repair = '{_RUNNING}', retry_at = NULL, note = NULL WHERE key = ?",
        (key,),
    )
