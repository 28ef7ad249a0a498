"""``pipeline-monitor migrate-history``: a single node's SQLite history, copied
into a group's PostgreSQL store.

Nothing is lost and nothing is copied twice, so it is safe to run again (after
a monitor added to the file, or after an interrupted run): events carry a key
made of the file's own store id and their id there; alerts, attempts and
settings already in the target are kept as the target has them (the group's
word wins); check totals are copied as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recovery_webhook.store.base import Store
from recovery_webhook.store.schema import store_id
from recovery_webhook.store.worker import Db

_CHUNK = 2_000

# table -> (columns, the conflict that means "already there")
_TABLES: dict[str, tuple[str, str]] = {
    "alerts": (
        "key, fingerprint, starts_at, alertname, component, labels, status, repair,"
        " first_seen, last_seen, notifications, retry_at, note",
        "ON CONFLICT (key) DO NOTHING",
    ),
    "attempts": (
        "attempt_id, component, alert_key, alertname, trigger, started_at, ended_at, status,"
        " error, actions, monitor, token",
        "ON CONFLICT (attempt_id) DO NOTHING",
    ),
    "settings": ("key, value", "ON CONFLICT (key) DO NOTHING"),
    "check_totals": (
        "recorder, component, checks, failures",
        "ON CONFLICT (recorder, component) DO UPDATE SET checks = excluded.checks,"
        " failures = excluded.failures",
    ),
    "monitors": (
        "incarnation, name, started_at, last_seen, view, stopped",
        "ON CONFLICT (incarnation) DO NOTHING",
    ),
}
_KEYS = {
    "alerts": "key",
    "attempts": "attempt_id",
    "settings": "key",
    "check_totals": "recorder, component",
    "monitors": "incarnation",
}


@dataclass
class Copied:
    """Rows read from the file, and how many of them the target did not have."""

    read: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{table}: {self.read[table]} read, {self.added.get(table, 0)} added"
            for table in self.read
        ]


async def copy_history(source: Store, target: Store) -> Copied:
    """Copy everything ``source`` holds into ``target`` (both open)."""
    copied = Copied()
    origin: str = await source.call(store_id)
    await _copy_events(source, target, origin, copied)
    for table, (columns, conflict) in _TABLES.items():
        await _copy_table(source, target, table, columns, conflict, copied)
    return copied


async def _copy_events(source: Store, target: Store, origin: str, copied: Copied) -> None:
    last = 0
    copied.read["events"] = copied.added["events"] = 0
    while True:

        def read(db: Db, after: int = last) -> list[Any]:
            return db.rows(
                "SELECT id, ts, kind, component, data, monitor, dedup FROM events"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, _CHUNK),
            )

        rows: list[Any] = await source.call(read)
        if not rows:
            return
        last = rows[-1][0]
        values = [
            (ts, kind, component, data, monitor, dedup or f"migrated:{origin}:{event_id}")
            for event_id, ts, kind, component, data, monitor, dedup in rows
        ]

        def write(db: Db, values: Sequence[Any] = values) -> int:
            added = 0
            for row in values:
                added += db.run(
                    "INSERT INTO events (ts, kind, component, data, monitor, dedup)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedup) WHERE dedup IS NOT NULL"
                    " DO NOTHING",
                    row,
                )
            return added

        copied.read["events"] += len(rows)
        copied.added["events"] += await target.call(write)


async def _copy_table(
    source: Store, target: Store, table: str, columns: str, conflict: str, copied: Copied
) -> None:
    width = len(columns.split(","))
    marks = ", ".join("?" * width)
    offset = 0
    copied.read[table] = copied.added[table] = 0
    while True:

        def read(db: Db, offset: int = offset) -> list[Any]:
            return db.rows(
                f"SELECT {columns} FROM {table} ORDER BY {_KEYS[table]} LIMIT ? OFFSET ?",
                (_CHUNK, offset),
            )

        rows: list[Any] = await source.call(read)
        if not rows:
            return
        offset += len(rows)

        def write(db: Db, rows: Sequence[Any] = rows) -> int:
            added = 0
            for row in rows:
                added += db.run(f"INSERT INTO {table} ({columns}) VALUES ({marks}) {conflict}", row)
            return added

        copied.read[table] += len(rows)
        copied.added[table] += await target.call(write)


async def migrate_history(path: Path, url: str) -> Copied:
    """Copy the SQLite history at ``path`` into the PostgreSQL store at ``url``."""
    from recovery_webhook.store.postgres import PostgresStore
    from recovery_webhook.store.sqlite import SqliteStore

    if not path.is_file():
        raise FileNotFoundError(f"no history file at {path}")
    source = SqliteStore(path)
    target = PostgresStore(url, "migrate-history")
    await source.open()
    try:
        await target.open()
        try:
            return await copy_history(source, target)
        finally:
            await target.close()
    finally:
        await source.close()
