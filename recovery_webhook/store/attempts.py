"""Repair attempts: every one, successes too, with the monitor and lease it ran under.

Each write of an attempt is fenced by that lease (see ``leases.fence``): a
monitor that has lost its lease (it stalled, or the store thought it dead) can
no longer write anything about the repair another monitor has taken over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from recovery_webhook.states import FAILED, AttemptStatus, Trigger
from recovery_webhook.store.alerts import mark_running
from recovery_webhook.store.leases import fence
from recovery_webhook.store.records import AttemptRow, Lease, encode_json
from recovery_webhook.store.worker import Db

if TYPE_CHECKING:
    from recovery_webhook.store.base import Store

_COLUMNS = (
    "attempt_id, component, alert_key, alertname, trigger, started_at, ended_at, status,"
    " error, actions, monitor, token"
)
_FAILED = ", ".join(f"'{s.value}'" for s in FAILED)
_RUNNING = AttemptStatus.RUNNING.value


def attempt_row(r: Sequence[Any]) -> AttemptRow:
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
        monitor=r[10],
        token=r[11],
    )


def _save(db: Db, attempt: AttemptRow) -> None:
    db.run(
        f"INSERT INTO attempts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (attempt_id) DO UPDATE SET ended_at = excluded.ended_at,"
        " status = excluded.status, error = excluded.error, actions = excluded.actions",
        (
            attempt.attempt_id,
            attempt.component,
            attempt.alert_key,
            attempt.alertname,
            str(attempt.trigger),
            attempt.started_at,
            attempt.ended_at,
            str(attempt.status),
            attempt.error,
            json.dumps(attempt.actions, default=str),
            attempt.monitor,
            attempt.token,
        ),
    )


def _ended_event(db: Db, attempt: AttemptRow) -> None:
    db.run(
        "INSERT INTO events (ts, kind, component, data, monitor) VALUES (?, ?, ?, ?, ?)",
        (
            attempt.ended_at,
            "recovery_attempt",
            attempt.component,
            encode_json(attempt.as_json()),
            attempt.monitor,
        ),
    )


class AttemptsRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def start(
        self,
        attempt: AttemptRow,
        lease: Lease | None,
        ids: Callable[[], Iterable[str]],
        alert_key: str | None = None,
    ) -> AttemptRow:
        """Store a new attempt under the first of ``ids()`` that no attempt has,
        and mark the repair of the alert ``alert_key`` (if any) running, in one
        transaction fenced by ``lease``; the attempt as stored."""

        def write(db: Db) -> AttemptRow:
            if lease is not None:
                fence(db, lease)
            taken = "SELECT 1 FROM attempts WHERE attempt_id = ?"
            attempt_id = next(i for i in ids() if db.one(taken, (i,)) is None)
            row = replace(attempt, attempt_id=attempt_id)
            _save(db, row)
            if alert_key is not None:
                mark_running(db, alert_key)
            return row

        result: AttemptRow = await self._store.call(write)
        return result

    async def save(self, attempt: AttemptRow, lease: Lease | None) -> None:
        """Store how far an attempt has got."""

        def write(db: Db) -> None:
            if lease is not None:
                fence(db, lease)
            _save(db, attempt)

        await self._store.call(write)

    async def end(self, attempt: AttemptRow, lease: Lease | None) -> None:
        """Store an attempt's end and its ``recovery_attempt`` event, in one
        transaction."""

        def write(db: Db) -> None:
            if lease is not None:
                fence(db, lease)
            _save(db, attempt)
            _ended_event(db, attempt)

        await self._store.call(write)

    async def interrupt(
        self, component: str, lease: Lease | None, now: float, error: str
    ) -> list[AttemptRow]:
        """Attempts of ``component`` left running by a holder that is gone (an
        older lease, or any, when ``lease`` is None): marked interrupted, with
        their events; the attempts as they end."""

        def write(db: Db) -> list[AttemptRow]:
            if lease is not None:
                fence(db, lease)
                rows = db.rows(
                    f"SELECT {_COLUMNS} FROM attempts WHERE component = ? AND status = ?"
                    " AND (token IS NULL OR token < ?)",
                    (component, _RUNNING, lease.token),
                )
            else:
                rows = db.rows(
                    f"SELECT {_COLUMNS} FROM attempts WHERE component = ? AND status = ?",
                    (component, _RUNNING),
                )
            ended = [
                replace(attempt_row(r), ended_at=now, status=AttemptStatus.INTERRUPTED, error=error)
                for r in rows
            ]
            for attempt in ended:
                _save(db, attempt)
                _ended_event(db, attempt)
            return ended

        result: list[AttemptRow] = await self._store.call(write)
        return result

    # -- reads -------------------------------------------------------------------------

    async def running_components(self) -> set[str]:
        def query(db: Db) -> set[str]:
            rows = db.rows("SELECT DISTINCT component FROM attempts WHERE status = ?", (_RUNNING,))
            return {r[0] for r in rows}

        result: set[str] = await self._store.call(query)
        return result

    async def failed_since(self, component: str, since: float) -> int:
        def query(db: Db) -> int:
            row = db.one(
                "SELECT count(*) FROM attempts WHERE component = ? AND started_at >= ?"
                f" AND trigger <> ? AND status IN ({_FAILED})",
                (component, since, Trigger.MANUAL.value),
            )
            return int(row[0])

        result: int = await self._store.call(query)
        return result

    async def recent(self, limit: int, component: str | None = None) -> list[AttemptRow]:
        def query(db: Db) -> list[AttemptRow]:
            sql = f"SELECT {_COLUMNS} FROM attempts"
            args: tuple[Any, ...] = ()
            if component is not None:
                sql += " WHERE component = ?"
                args = (component,)
            sql += " ORDER BY started_at DESC, attempt_id DESC LIMIT ?"
            return [attempt_row(r) for r in db.rows(sql, (*args, limit))]

        result: list[AttemptRow] = await self._store.call(query)
        return result

    async def last_per_component(self) -> dict[str, AttemptRow]:
        def query(db: Db) -> dict[str, AttemptRow]:
            rows = db.rows(
                f"SELECT {_COLUMNS} FROM attempts a WHERE started_at = (SELECT max(started_at)"
                " FROM attempts b WHERE b.component = a.component)"
            )
            return {r[1]: attempt_row(r) for r in rows}

        result: dict[str, AttemptRow] = await self._store.call(query)
        return result

    async def stats(self) -> dict[str, int]:
        def query(db: Db) -> dict[str, int]:
            rows = db.rows("SELECT status, count(*) FROM attempts GROUP BY status")
            return {status: int(count) for status, count in rows}

        result: dict[str, int] = await self._store.call(query)
        return result
