"""History events: what happened, in order, for the feed, uptime and incidents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from recovery_webhook.store.records import Event, encode_json
from recovery_webhook.store.worker import Db

if TYPE_CHECKING:
    from recovery_webhook.store.base import Store

# A key makes an event one however many monitors write it.
INSERT_EVENTS = (
    "INSERT INTO events (ts, kind, component, data, monitor, dedup) VALUES {}"
    " ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING"
)
EVENT_WIDTH = 6
EVENT_TYPES = ("float8", "text", "text", "text", "text", "text")
_COLUMNS = "id, ts, kind, component, data, monitor"


def event_values(
    events: Iterable[Event], monitor: str | None, keys: Sequence[str | None] | None = None
) -> list[Any]:
    """Flat rows for INSERT_EVENTS."""
    values: list[Any] = []
    for index, (ts, kind, component, data) in enumerate(events):
        key = keys[index] if keys is not None else None
        values += (ts, kind, component, encode_json(data), monitor, key)
    return values


class EventWrite:
    """Events to add; back-to-back writes of events become multi-row statements."""

    batched: ClassVar[bool] = True
    __slots__ = ("rows", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.rows = len(values) // EVENT_WIDTH

    def __call__(self, db: Db) -> None:
        db.insert_rows(INSERT_EVENTS, EVENT_WIDTH, self.values, EVENT_TYPES)

    @classmethod
    def run_together(cls, db: Db, jobs: Sequence[EventWrite]) -> None:
        db.insert_rows(
            INSERT_EVENTS, EVENT_WIDTH, [v for job in jobs for v in job.values], EVENT_TYPES
        )


def _feed_row(row: Sequence[Any]) -> dict[str, Any]:
    event_id, ts, kind, component, data, monitor = row
    found: dict[str, Any] = {"id": event_id, "timestamp": ts, "type": kind, "component": component}
    if monitor is not None:
        found["monitor"] = monitor
    found.update(json.loads(data))
    return found


class EventsRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        events: Iterable[Event],
        monitor: str | None,
        keys: Sequence[str | None] | None = None,
    ) -> asyncio.Future[None]:
        """Queue events (``keys``: one per event, or None); kept while the store
        is down."""
        values = event_values(events, monitor, keys)
        return self._store.write(EventWrite(values))

    async def recent(self, limit: int, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The newest events first: ``id``, ``timestamp``, ``type``, ``component``,
        ``monitor`` (when known) and the event's data."""

        def query(db: Db) -> list[dict[str, Any]]:
            if kinds:
                marks = ",".join("?" * len(kinds))
                rows = db.rows(
                    f"SELECT {_COLUMNS} FROM events WHERE kind IN ({marks})"
                    " ORDER BY ts DESC, id DESC LIMIT ?",
                    (*kinds, limit),
                )
            else:
                rows = db.rows(
                    f"SELECT {_COLUMNS} FROM events ORDER BY ts DESC, id DESC LIMIT ?", (limit,)
                )
            return [_feed_row(r) for r in rows]

        result: list[dict[str, Any]] = await self._store.call(query)
        return result

    async def since(self, since: float, kinds: Sequence[str]) -> list[dict[str, Any]]:
        """Events of ``kinds`` from ``since``, oldest first."""
        marks = ",".join("?" * len(kinds))

        def query(db: Db) -> list[dict[str, Any]]:
            rows = db.rows(
                f"SELECT {_COLUMNS} FROM events WHERE kind IN ({marks}) AND ts >= ?"
                " ORDER BY ts, id",
                (*kinds, since),
            )
            return [_feed_row(r) for r in rows]

        result: list[dict[str, Any]] = await self._store.call(query)
        return result

    async def transitions_since(self, since: float) -> list[tuple[float, str, dict[str, Any]]]:
        """Publishing and monitor-lifecycle events from ``since``, and the last one
        before it."""
        kinds = ("publishing", "monitor_started", "monitor_stopped")

        def query(db: Db) -> list[tuple[float, str, dict[str, Any]]]:
            before = db.rows(
                "SELECT ts, kind, data FROM events WHERE kind IN (?, ?, ?) AND ts < ?"
                " ORDER BY ts DESC, id DESC LIMIT 1",
                (*kinds, since),
            )
            after = db.rows(
                "SELECT ts, kind, data FROM events WHERE kind IN (?, ?, ?) AND ts >= ?"
                " ORDER BY ts, id",
                (*kinds, since),
            )
            return [(ts, kind, json.loads(data)) for ts, kind, data in [*before, *after]]

        result: list[tuple[float, str, dict[str, Any]]] = await self._store.call(query)
        return result
