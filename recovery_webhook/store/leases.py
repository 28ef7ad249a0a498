"""Leases: one holder at a time for a component's repair (and for the group's
bookkeeping), with a fencing token that grows with every new holder.

Times are the store's own clock, so the monitors' clocks never have to agree.
A lease that has expired is free to take; a write fenced by a lease (see
:func:`fence`) succeeds only while its holder still holds it, unexpired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recovery_webhook.store.errors import LeaseLost
from recovery_webhook.store.records import Lease, LeaseInfo
from recovery_webhook.store.worker import Db

if TYPE_CHECKING:
    from recovery_webhook.store.base import Store


def fence(db: Db, lease: Lease) -> None:
    """In a write's transaction: go on only if ``lease`` still holds (on
    PostgreSQL the lease's row stays locked until the commit, so a takeover
    waits for this write to end). Raises LeaseLost."""
    now = db.dialect.now
    found = db.one(
        f"SELECT token FROM leases WHERE name = ? AND holder = ? AND token = ?"
        f" AND expires_at > {now}{db.dialect.lock_row}",
        (lease.name, lease.holder, lease.token),
    )
    if found is None:
        raise LeaseLost(f"the lease {lease.name!r} (token {lease.token}) is no longer held")


class LeasesRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def acquire(self, name: str, holder: str, monitor: str, ttl: float) -> Lease | None:
        """Take ``name`` for ``ttl`` seconds if nobody holds it; None if somebody does."""

        def write(db: Db) -> Lease | None:
            now = db.dialect.now
            row = db.one(
                f"INSERT INTO leases (name, holder, monitor, token, expires_at)"
                f" VALUES (?, ?, ?, 1, {now} + ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " monitor = excluded.monitor, token = leases.token + 1,"
                f" expires_at = excluded.expires_at WHERE leases.expires_at <= {now}"
                " RETURNING token, expires_at",
                (name, holder, monitor, ttl),
            )
            return None if row is None else Lease(name, holder, int(row[0]), float(row[1]))

        result: Lease | None = await self._store.call(write)
        return result

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend a held lease; None if it was lost (expired, or taken over)."""

        def write(db: Db) -> Lease | None:
            now = db.dialect.now
            row = db.one(
                f"UPDATE leases SET expires_at = {now} + ? WHERE name = ? AND holder = ?"
                f" AND token = ? AND expires_at > {now} RETURNING expires_at",
                (ttl, lease.name, lease.holder, lease.token),
            )
            return None if row is None else Lease(lease.name, lease.holder, lease.token, row[0])

        result: Lease | None = await self._store.call(write)
        return result

    async def release(self, lease: Lease) -> None:
        """Give a lease up now (the next holder need not wait for it to expire)."""

        def write(db: Db) -> None:
            db.run(
                f"UPDATE leases SET expires_at = {db.dialect.now}"
                " WHERE name = ? AND holder = ? AND token = ?",
                (lease.name, lease.holder, lease.token),
            )

        await self._store.call(write)

    async def all(self) -> list[LeaseInfo]:
        def query(db: Db) -> list[LeaseInfo]:
            rows = db.rows(
                f"SELECT name, monitor, holder, token, expires_at, expires_at > {db.dialect.now}"
                " FROM leases ORDER BY name"
            )
            return [LeaseInfo(r[0], r[1], r[2], int(r[3]), float(r[4]), bool(r[5])) for r in rows]

        result: list[LeaseInfo] = await self._store.call(query)
        return result
