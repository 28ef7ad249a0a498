"""History and coordination, behind one interface with two backends.

:class:`~recovery_webhook.store.sqlite.SqliteStore` is the embedded default of a
single node; :class:`~recovery_webhook.store.postgres.PostgresStore` is shared by
a group of monitors. :func:`open_store` picks one from the config.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from recovery_webhook.store.base import Availability, Store
from recovery_webhook.store.errors import LeaseLost, StoreError, StoreTooNew, StoreUnavailable
from recovery_webhook.store.records import (
    AlertRow,
    AttemptRow,
    ComponentSeen,
    Event,
    Lease,
    LeaseInfo,
    MonitorRow,
)

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] in POSTGRES_SCHEMES


def make_store(url: str | None, path: Path, monitor: str) -> Store:
    """The PostgreSQL store at ``url``, or else the SQLite file at ``path``."""
    if url:
        from recovery_webhook.store.postgres import PostgresStore

        return PostgresStore(url, monitor)
    from recovery_webhook.store.sqlite import SqliteStore

    return SqliteStore(path)


__all__ = [
    "AlertRow",
    "AttemptRow",
    "Availability",
    "ComponentSeen",
    "Event",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "MonitorRow",
    "Store",
    "StoreError",
    "StoreTooNew",
    "StoreUnavailable",
    "is_postgres_url",
    "make_store",
]
