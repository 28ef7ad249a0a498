"""The group's members and shared settings.

Each monitor beats: it writes its name and its view of every component, and the
store stamps the beat with its own clock. A monitor is live while its last beat
is recent. Settings hold what the group decided (a component handed to people,
the active storage target); check totals are written by the one monitor that
counts for the group at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recovery_webhook.store.leases import fence
from recovery_webhook.store.records import ComponentSeen, Lease, MonitorRow, encode_json
from recovery_webhook.store.worker import Db

if TYPE_CHECKING:
    from recovery_webhook.store.base import Store


def _monitor_row(r: Any) -> MonitorRow:
    view = {
        name: ComponentSeen(seen["status"], seen["checked_at"], seen["since"], seen.get("error"))
        for name, seen in json.loads(r[4]).items()
    }
    return MonitorRow(r[0], r[1], float(r[2]), float(r[3]), view, bool(r[5]))


class MonitorsRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def beat(
        self,
        incarnation: str,
        name: str,
        started_at: float,
        view: Mapping[str, ComponentSeen],
        stopped: bool = False,
    ) -> float:
        """Say this monitor is alive (or, with ``stopped``, that it has stopped),
        with its view; the store's time of the beat."""
        data = encode_json({c: seen.as_json() for c, seen in view.items()})

        def write(db: Db) -> float:
            now = db.dialect.now
            row = db.one(
                f"INSERT INTO monitors VALUES (?, ?, ?, {now}, ?, ?) ON CONFLICT (incarnation)"
                " DO UPDATE SET last_seen = excluded.last_seen, view = excluded.view,"
                " stopped = excluded.stopped RETURNING last_seen",
                (incarnation, name, started_at, data, int(stopped)),
            )
            return float(row[0])

        result: float = await self._store.call(write)
        return result

    async def all(self) -> tuple[float, list[MonitorRow]]:
        """The store's time now, and every monitor it knows, newest beat first."""

        def query(db: Db) -> tuple[float, list[MonitorRow]]:
            now = db.one(f"SELECT {db.dialect.now}")[0]
            rows = db.rows(
                "SELECT incarnation, name, started_at, last_seen, view, stopped FROM monitors"
                " ORDER BY last_seen DESC"
            )
            return float(now), [_monitor_row(r) for r in rows]

        result: tuple[float, list[MonitorRow]] = await self._store.call(query)
        return result

    async def mark_stopped(self, incarnation: str) -> None:
        """Record that a monitor has stopped (its end is in the history)."""

        def write(db: Db) -> None:
            db.run("UPDATE monitors SET stopped = 1 WHERE incarnation = ?", (incarnation,))

        await self._store.call(write)

    async def forget(self, incarnations: list[str]) -> None:
        """Drop the rows of monitors that are gone (their end is in the history)."""
        if not incarnations:
            return
        marks = ",".join("?" * len(incarnations))

        def write(db: Db) -> None:
            db.run(f"DELETE FROM monitors WHERE incarnation IN ({marks})", incarnations)

        await self._store.call(write)


class SettingsRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str) -> Any:
        def query(db: Db) -> Any:
            return db.one("SELECT value FROM settings WHERE key = ?", (key,))

        row = await self._store.call(query)
        return None if row is None else json.loads(row[0])

    async def with_prefix(self, prefix: str) -> dict[str, Any]:
        """Settings whose key starts with ``prefix``, by the rest of the key; unset
        (null) ones left out."""

        def query(db: Db) -> list[Any]:
            return db.rows(
                "SELECT key, value FROM settings WHERE key LIKE ? ESCAPE '\\'",
                (prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%",),
            )

        rows = await self._store.call(query)
        found = {key[len(prefix) :]: json.loads(value) for key, value in rows}
        return {key: value for key, value in found.items() if value is not None}

    async def put(
        self,
        key: str,
        value: Any,
        lease: Lease | None = None,
        events: list[tuple[float, str, str | None, dict[str, Any]]] | None = None,
        monitor: str | None = None,
    ) -> bool:
        """Set ``key`` (None unsets it), with ``events`` if it changed; fenced by
        ``lease`` when given. True if the value changed: of several monitors
        making the same change, one is told it did."""
        from recovery_webhook.store.events import (
            EVENT_TYPES,
            EVENT_WIDTH,
            INSERT_EVENTS,
            event_values,
        )

        text = json.dumps(value)
        values = event_values(events or [], monitor)

        def write(db: Db) -> bool:
            if lease is not None:
                fence(db, lease)
            if value is None:  # unsetting what was never set changes nothing
                changed = db.one(
                    "UPDATE settings SET value = ? WHERE key = ? AND value <> ? RETURNING key",
                    (text, key, text),
                )
            else:
                changed = db.one(
                    "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                    " SET value = excluded.value WHERE settings.value <> excluded.value"
                    " RETURNING key",
                    (key, text),
                )
            if changed is None:
                return False
            db.insert_rows(INSERT_EVENTS, EVENT_WIDTH, values, EVENT_TYPES)
            return True

        result: bool = await self._store.call(write)
        return result

    async def put_check_totals(self, recorder: str, totals: Mapping[str, tuple[int, int]]) -> None:
        """``recorder``'s own totals (checks, failures) per component; idempotent."""
        rows = [(recorder, c, checks, failures) for c, (checks, failures) in totals.items()]

        def write(db: Db) -> None:
            for row in rows:
                db.run(
                    "INSERT INTO check_totals VALUES (?, ?, ?, ?) ON CONFLICT (recorder,"
                    " component) DO UPDATE SET checks = excluded.checks,"
                    " failures = excluded.failures",
                    row,
                )

        await self._store.call(write)

    async def check_totals(self) -> dict[str, tuple[int, int]]:
        def query(db: Db) -> list[Any]:
            return db.rows(
                "SELECT component, sum(checks), sum(failures) FROM check_totals GROUP BY component"
            )

        rows = await self._store.call(query)
        return {c: (int(checks), int(failures)) for c, checks, failures in rows}
